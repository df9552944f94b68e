"""What a classifier reads (`moola.data.inputs`): the decision point, the span channel, and every
place that must build the same inputs (augmentation, pseudo-samples, the saved model, predict)."""

import warnings

import numpy as np
import pytest
import torch

from moola import artifacts
from moola.config import AugmentConfig
from moola.data.inputs import InputSpec, model_inputs, span_mask
from moola.data.normalize import normalize_windows
from moola.models.encoder import BiLSTMEncoder
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.training.augment import augment_batch
from moola.training.pseudo import make_pseudo_samples

from .conftest import ohlc_windows


@pytest.fixture
def raw():
    return ohlc_windows(np.random.default_rng(3), 6, n_bars=20)


def test_visible_bars_cut_the_window_and_normalise_on_what_is_left(raw):
    spec = InputSpec(visible_bars=12)
    inputs = model_inputs(raw, spec)
    np.testing.assert_array_equal(inputs, normalize_windows(raw[:, :12]))
    later = raw.copy()
    later[:, 12:] *= 1.5  # bars after the decision point: nothing the model reads may change
    np.testing.assert_array_equal(model_inputs(later, spec), inputs)
    assert not np.array_equal(normalize_windows(later)[:, :12], normalize_windows(raw)[:, :12])  # whole-window z-score would


def test_the_span_channel_marks_the_labeled_bars_and_is_required(raw):
    spans = np.array([[2, 4], [0, 0], [5, 19], [3, 3], [10, 11], [7, 9]])
    inputs = model_inputs(raw, InputSpec(span_channel=True), spans)
    assert inputs.shape == (6, 20, 5)
    np.testing.assert_array_equal(inputs[0, :, 4], [0, 0, 1, 1, 1] + [0] * 15)
    np.testing.assert_array_equal(inputs[..., 4], span_mask(spans, 20))
    np.testing.assert_array_equal(inputs[..., :4], normalize_windows(raw))
    with pytest.raises(ValueError, match="expected the columns expansion_start and expansion_end"):
        model_inputs(raw, InputSpec(span_channel=True))


def test_a_file_written_before_the_input_spec_reads_whole_windows():
    assert InputSpec.from_record({"shared_channels": True, "window_shape": [105, 4]}) == InputSpec(True, 0, False)
    spec = InputSpec(False, 75, True)
    assert InputSpec.from_record(spec.record()) == spec


def test_augmentation_leaves_the_span_channel_alone_and_draws_the_same_noise(raw):
    values = torch.from_numpy(normalize_windows(raw))
    marks = torch.from_numpy(span_mask(np.tile([[4, 9]], (6, 1)), 20)).unsqueeze(-1)
    plain = augment_batch(values, 0.05, 0.1, 0.0, 1.0, torch.Generator().manual_seed(1))
    marked = augment_batch(torch.cat([values, marks], 2), 0.05, 0.1, 0.0, 1.0, torch.Generator().manual_seed(1),
                           marker_channels=1)
    torch.testing.assert_close(marked[..., :4], plain)  # the same draws, the same values
    torch.testing.assert_close(marked[..., 4:], marks)  # jitter and scaling never touch the marks
    warped = augment_batch(torch.cat([values, marks], 2), 0.0, 0.0, 0.3, 1.0, torch.Generator().manual_seed(2),
                           marker_channels=1)
    assert not torch.equal(warped[..., 4:], marks) and warped[..., 4:].min() >= 0  # moved with its bars


def test_the_span_aware_lstm_reads_the_span_and_keeps_the_encoder_pretrained_on_prices(raw):
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, 2, hidden_size=8, num_layers=2, span_channel=True).eval()
    encoder = BiLSTMEncoder(4, 8, 2)
    match = artifacts.load_encoder_weights(model, {f"lstm.{k}" if not k.startswith("lstm.") else k: v
                                                   for k, v in encoder.state_dict().items()})
    assert match["encoder_match_ratio"] == 1.0  # the span channel adds nothing to the encoder's input
    prices = np.repeat(normalize_windows(raw[:1]), 2, axis=0)  # one window, two labeled spans
    inputs = np.concatenate([prices, span_mask(np.array([[2, 5], [12, 16]]), 20)[..., None]], axis=2)
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs))
    assert not torch.allclose(logits[0], logits[1])  # two spans of one window: two inputs
    assert model.init_args["span_channel"] is True
    assert "span_channel" not in EnhancedSimpleLSTM(4, 2, hidden_size=8).init_args  # older files rebuild as saved


def test_pseudo_samples_carry_their_source_rows_span():
    rng = np.random.default_rng(5)
    raw = ohlc_windows(rng, 16, n_bars=24)
    spans = np.stack([rng.integers(2, 8, 16), rng.integers(12, 20, 16)], axis=1)
    inputs = model_inputs(raw, InputSpec(span_channel=True), spans)
    y = np.arange(16) % 2
    with warnings.catch_warnings():  # scipy's ks_2samp switches its method on ties, with a warning
        warnings.filterwarnings("ignore", "ks_2samp", RuntimeWarning)
        samples = make_pseudo_samples(inputs[:12], y[:12], inputs[12:], lambda w: np.tile([0.5, 0.5], (len(w), 1)),
                                      AugmentConfig(quality_threshold=0.3), ohlc=True, seed=17, marker_channels=1)
    assert len(samples.y) and samples.windows.shape[1:] == (24, 5)
    for window, origin in zip(samples.windows, samples.provenance):
        np.testing.assert_array_equal(window[:, 4], inputs[origin["source_rows"][0], :, 4])
    assert set(samples.ks)  # the KS statistics compare price channels (the span channel is no statistic)


def test_predict_reads_windows_cut_at_the_decision_point_and_needs_spans_when_the_model_reads_them(raw):
    from pathlib import Path

    from moola.data.parquet import WindowTable
    from moola.deploy.model import Deployed
    from moola.deploy.predict import contract_problems

    spec = InputSpec(True, 12, True)
    deployed = Deployed("finetuned", [], ["consolidation", "retracement"],
                        {"window_shape": [20, 4], "channels": "ohlc", **spec.record()})
    ids = np.array([f"w{i}" for i in range(6)], dtype=object)
    spans = np.tile([[3, 8]], (6, 1))

    def problems(features, expansion):
        return [str(p) for p in contract_problems(WindowTable(Path("new.parquet"), ids, features, expansion=expansion),
                                                  deployed)]

    assert problems(raw.astype(np.float32), spans) == []
    assert problems(raw[:, :12].astype(np.float32), spans) == []  # live: the bars up to the decision point
    [short] = problems(raw[:, :10].astype(np.float32), spans)
    assert "windows of 12 to 20 bars" in short and "it reads bars 0..11" in short
    [missing] = problems(raw.astype(np.float32), None)
    assert "this model reads it as an input" in missing and "no such columns" in missing
    [late] = problems(raw.astype(np.float32), np.tile([[3, 14]], (6, 1)))
    assert "inside the bars the model reads (0..11)" in late


def test_the_span_aligned_view_reads_the_bars_ending_at_each_span(raw):
    spans = np.array([[9, 11], [13, 19], [8, 8], [10, 15], [12, 12], [9, 14]])
    inputs = model_inputs(raw, InputSpec(span_bars=9, span_channel=True), spans)
    assert inputs.shape == (6, 9, 5)
    np.testing.assert_array_equal(inputs[1, :, :4], normalize_windows(raw[1:2, 11:20])[0])  # bars 11..19
    np.testing.assert_array_equal(inputs[0, :, 4], [0] * 6 + [1, 1, 1])  # the span ends the view
    np.testing.assert_array_equal(inputs[3, :, 4], [0, 0, 0] + [1] * 6)
    later = raw.copy()
    later[0, 12:] *= 1.5  # bars after row 0's span: the view never reads them
    np.testing.assert_array_equal(model_inputs(later, InputSpec(span_bars=9), spans)[0],
                                  model_inputs(raw, InputSpec(span_bars=9), spans)[0])
    with pytest.raises(ValueError, match=r"expected every span to end at bar 8 or later.*rows \[0\]"):
        model_inputs(raw, InputSpec(span_bars=9), np.array([[2, 5]] + [[9, 11]] * 5))
    with pytest.raises(ValueError, match="data.span_bars"):
        model_inputs(raw, InputSpec(span_bars=9))


def test_gate_0_checks_spans_against_the_span_aligned_view(data_folder):
    from moola.config import DataConfig
    from moola.data.dataset import check_data

    data_folder.labeled["expansion_start"] = np.full(20, 6)
    data_folder.labeled["expansion_end"] = np.full(20, 9)
    data_folder.labeled["expansion_end"][4] = 5  # ends before bar 7: an 8-bar view cannot end there
    data_folder.labeled["expansion_start"][4] = 3
    root = data_folder.write()
    [problem] = [str(p) for p in check_data(root, DataConfig(span_bars=8))[1]]
    assert "fit the span-aligned view" in problem and "rows 4 (1 in all)" in problem
    assert check_data(root, DataConfig(span_bars=6))[1] == []
    del data_folder.labeled["expansion_start"], data_folder.labeled["expansion_end"]
    [missing] = [str(p) for p in check_data(data_folder.write(), DataConfig(span_bars=6))[1]]
    assert "data.span_bars=6 reads the bars ending at it" in missing and "no such columns" in missing


def test_span_awareness_is_on_where_spans_vary_and_changes_nothing_where_they_do_not():
    from moola.config import DataConfig
    from moola.data.inputs import resolve_spec

    varying = np.array([[31, 36], [40, 52], [30, 30], [60, 74]])
    user = DataConfig(prediction_bars=(30, 74))
    assert resolve_spec(user, varying) == InputSpec(True, 0, True, 31)  # the prediction bars fix the view
    assert resolve_spec(DataConfig(), varying) == InputSpec(True, 0, True, 31)  # else the earliest span end
    assert resolve_spec(DataConfig(), varying[[0, 1, 3]]) == InputSpec(True, 0, True, 37)
    assert resolve_spec(DataConfig(), np.tile([[30, 74]], (4, 1))) == InputSpec(True, 0, False, 0)  # the seed's demo
    assert resolve_spec(DataConfig(), None) == InputSpec(True, 0, False, 0)
    assert resolve_spec(DataConfig(visible_bars=75), varying) == InputSpec(True, 75, True, 0)  # one decision point
    assert resolve_spec(DataConfig(span_bars=0, span_input=False), varying) == InputSpec(True, 0, False, 0)
    assert resolve_spec(DataConfig(), np.array([[5, 40], [30, 31]])).span_bars == 0  # a 36-bar span fits no 32-bar view
