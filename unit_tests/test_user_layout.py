"""The user's own layout (USER_DATA.md): the demo that mimics it, and gate 0 on it, by protocol.

No timestamps, `{base}_exp_{n}` ids, several labeled spans per window, a conflicting pair, a
sliding-window pool over the whole history holding every labeled window and its neighbours.
"""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from moola.__main__ import main
from moola.config import DataConfig
from moola.data import demo_user
from moola.data.dataset import check_data
from moola.data.inputs import InputSpec
from moola.data.labels import audit_labels, check_spans
from moola.data.normalize import normalize_windows
from moola.data.parquet import read_windows
from moola.stages.classifiers import overfit_rows
from moola.stages.context import resolve_settings
from moola.stages.env import verify_environment

from .test_input_mistakes import history_windows

POOL = 2000  # the smallest pool that holds the 66 labeled windows apart, for speed
USER = DataConfig(prediction_bars=(30, 74))


@pytest.fixture(scope="module")
def tables():
    return demo_user.generate(seed=17, n_unlabeled=POOL)


@pytest.fixture(scope="module")
def user_root(tmp_path_factory):
    return demo_user.write_demo(tmp_path_factory.mktemp("user") / "data", n_unlabeled=POOL)


def conflicting_pairs(labeled) -> list:
    """Rows of one base id on the same span with different labels, found from the columns alone."""
    seen, pairs = {}, []
    for i, row_id in enumerate(labeled["window_id"]):
        key = (row_id.split("_")[0], int(labeled["expansion_start"][i]), int(labeled["expansion_end"][i]))
        if key in seen and labeled["label"][seen[key]] != labeled["label"][i]:
            pairs.append((labeled["window_id"][seen[key]], row_id))
        seen.setdefault(key, i)
    return pairs


def test_the_user_layout_demo_is_laid_out_like_the_users_files(tables):
    labeled, unlabeled, split = tables["labeled"], tables["unlabeled"], tables["split"]
    assert "timestamp" not in labeled and "timestamp" not in unlabeled
    assert all(re.fullmatch(r"\d+_exp_\d+", i) for i in labeled["window_id"])
    bases = np.array([int(i.split("_")[0]) for i in labeled["window_id"]])
    assert len(np.unique(bases)) == 66 < len(bases)  # several rows per window
    assert (np.diff(bases) >= 0).all()  # rows in time order
    start, end = labeled["expansion_start"], labeled["expansion_end"]
    assert (30 <= start).all() and (start <= end).all() and (end <= 74).all()
    assert 5 <= (end - start + 1).min() and (end - start + 1).max() <= 23
    # every labeled window is a pool window verbatim: window `base` starts at base × stride
    np.testing.assert_array_equal(unlabeled["features"][bases], labeled["features"])
    assert unlabeled["window_id"][bases[0]] == f"window_{bases[0] * demo_user.STRIDE}"
    spans_per_window = {b: {(s, e) for s, e, bb in zip(start, end, bases) if bb == b} for b in np.unique(bases)}
    assert sum(len(s) > 1 for s in spans_per_window.values()) >= 20  # windows with two spans of their own
    assert len(conflicting_pairs(labeled)) == 1
    assert split["train_indices"] == list(range(len(split["train_indices"])))  # temporal by row order
    assert split["val_indices"][0] == len(split["train_indices"]) and split["val_indices"][-1] == len(bases) - 1


def test_the_user_layout_demo_is_deterministic(tables):
    again = demo_user.generate(seed=17, n_unlabeled=POOL)
    np.testing.assert_array_equal(again["labeled"]["features"], tables["labeled"]["features"])
    assert again["labeled"]["window_id"] == tables["labeled"]["window_id"]


def test_the_truth_lives_in_the_labeled_span(tables):
    labeled = tables["labeled"]
    close = np.log(labeled["features"][..., 3])
    step = np.diff(close, axis=1).std(axis=1)  # (N,) the window's own bar volatility
    moves = []
    for row, (s, e) in enumerate(zip(labeled["expansion_start"], labeled["expansion_end"])):
        span = close[row, s: e + 1]
        moves.append((span.max() - span.min()) / step[row] / np.sqrt(e - s + 1))  # range per √bar, in σ
    moves, labels = np.array(moves), np.array(labeled["label"])
    assert np.median(moves[labels == "retracement"]) > 1.5 * np.median(moves[labels == "consolidation"])
    raw = labeled["features"][..., 3]
    ratio = np.median(np.diff(np.log(raw), axis=1).std(axis=1)[labels == "retracement"]) / np.median(step[labels == "consolidation"])
    assert 0.7 < ratio < 1.5  # the windows are not told apart by their volatility alone


def test_gate_0_under_blocked_counts_what_the_folds_and_gate_3_handle(user_root, tmp_path):
    settings = resolve_settings(user_root, data_dir=str(user_root), artifacts_dir=str(tmp_path / "a"), results=None,
                                device="cpu", profile="quick", overrides=["data.prediction_bars=30,74"], seed=17,
                                fresh=False, demo=False)
    report = verify_environment(settings)
    assert report["problems"] == []
    notes = "\n".join(report["notes"])
    assert "98 labeled rows from 66 distinct windows" in notes
    assert re.search(r"gate 3 leaves \d+ of 2000 pool windows out of pretraining \(66 identical to", notes)
    assert "train row(s) sharing bars with a val/test row across the split's boundary" in notes
    # the spans vary: the span-aligned view (prediction bars 30-74: the 31 bars ending at each span) and channel
    assert "the classifiers read the 31 bars ending at each labeled span's last bar (data.span_bars=31)" in notes
    assert "one input with two answers" not in " ".join(report["warnings"])
    (first, second), = conflicting_pairs(read_table(user_root))
    assert any(f"{first} / {second}" in w for w in report["warnings"]), report["warnings"]
    assert report["data"]["n_windows"] == 66 and report["labels"]["conflicts"] == [[first, second]]


def read_table(root):
    table, _ = read_windows(root / "processed/train_clean.parquet", labeled=True)
    return {"window_id": table.window_ids.tolist(), "label": table.labels.tolist(),
            "expansion_start": table.expansion[:, 0], "expansion_end": table.expansion[:, 1]}


def test_gate_0_under_holdout_refuses_with_commands_that_fix_it(user_root, tmp_path, capsys):
    import shutil

    root = shutil.copytree(user_root, tmp_path / "copy")
    problems = [str(p) for p in check_data(root, USER, "holdout")[1]]
    assert any("val/test rows in the pretraining pool" in p and f"python -m moola filter-pool {root}" in p
               for p in problems), problems
    assert any("share bars with val/test rows" in p and f"python -m moola make-split {root}" in p
               for p in problems), problems
    assert check_data(root, USER, "blocked")[1] == []  # the same files pass under the folds
    assert main(["make-split", str(root)]) == 0
    assert main(["filter-pool", str(root)]) == 0
    assert "kept (the old file is" in capsys.readouterr().out
    assert check_data(root, USER, "holdout")[1] == []
    assert (root / "raw/unlabeled_windows.parquet.bak").is_file()


def test_conflicts_duplicates_and_distinct_windows_are_counted(data_folder):
    data_folder.labeled["features"][1] = data_folder.labeled["features"][0]  # row 1: row 0's window, other label
    data_folder.labeled["features"][4] = data_folder.labeled["features"][2] * 1.0001  # a scaled copy, same label
    data_folder.labeled["expansion_start"] = np.full(20, 3)
    data_folder.labeled["expansion_end"] = np.full(20, 8)
    data_folder.labeled["expansion_end"][6] = 9  # distinct spans never make a conflict
    table, _ = read_windows(data_folder.write() / "processed/train_clean.parquet", labeled=True)
    audit = audit_labels(table, normalize_windows(table.features))
    assert audit.conflicts == (("0_exp_1", "1_exp_1"),)
    assert audit.duplicates == 1 and audit.n_windows == 18 and audit.n_rows == 20


def test_rows_of_one_window_on_different_spans_are_not_a_conflict(data_folder):
    data_folder.labeled["features"][1] = data_folder.labeled["features"][0]
    data_folder.labeled["expansion_start"] = np.full(20, 2)
    data_folder.labeled["expansion_end"] = np.array([4, 9] + [6] * 18)
    table, _ = read_windows(data_folder.write() / "processed/train_clean.parquet", labeled=True)
    audit = audit_labels(table, normalize_windows(table.features))
    assert audit.conflicts == () and audit.multi_span_windows == 1 and audit.mixed_label_windows == 1


@pytest.mark.parametrize("start, end, bars, expected", [
    (6, 4, (2, 9), "expansion_start <= expansion_end"),
    (3, 12, (), "spans inside the window's bars 0..11"),
    (1, 5, (2, 9), "spans inside the prediction bars 2..9"),
])
def test_spans_are_validated(data_folder, start, end, bars, expected):
    data_folder.labeled["expansion_start"] = np.full(20, 3)
    data_folder.labeled["expansion_end"] = np.full(20, 5)
    data_folder.labeled["expansion_start"][7], data_folder.labeled["expansion_end"][7] = start, end
    root = data_folder.write()
    table, _ = read_windows(root / "processed/train_clean.parquet", labeled=True)
    [problem] = [str(p) for p in check_spans(table, bars)]
    assert expected in problem and "rows 7 (1 in all)" in problem and "7_exp_1" in problem
    assert any(expected in str(p) for p in check_data(root, DataConfig(prediction_bars=bars))[1])


def test_row_order_that_shared_bars_contradict_is_refused_by_holdout_and_warned_by_blocked(data_folder, tmp_path):
    later, earlier = history_windows(2, 3)[::-1]  # row 5 starts 3 bars after row 6: rows out of time order
    data_folder.labeled["features"][5], data_folder.labeled["features"][6] = later, earlier
    del data_folder.labeled["timestamp"]
    root = data_folder.write()
    [problem] = [str(p) for p in check_data(root, DataConfig(), "holdout")[1]]
    assert "row order" in problem and "row 6 (6_exp_1) shares bars with row 5 (5_exp_1) and starts 3 bars" in problem
    assert f"make-split {root}" in problem
    assert check_data(root, DataConfig(), "blocked")[1] == []
    settings = resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "a"), results=None,
                                device="cpu", profile="quick", overrides=[], seed=17, fresh=False, demo=False)
    report = verify_environment(settings)
    assert any("row order" in w and "blocks and embargo follow row order" in w for w in report["warnings"])


def test_ids_whose_window_base_goes_backwards_contradict_row_order(data_folder):
    data_folder.labeled["window_id"][3], data_folder.labeled["window_id"][4] = "40_exp_1", "2_exp_1"
    del data_folder.labeled["timestamp"]
    problems = [str(p) for p in check_data(data_folder.write(), DataConfig(), "walk-forward")[1]]
    assert any("row 4 (2_exp_1)'s window base precedes row 3 (40_exp_1)'s" in p for p in problems), problems


def test_without_timestamps_ids_or_shared_bars_row_order_is_said_to_be_assumed(data_folder):
    data_folder.labeled["window_id"] = [f"w{i}" for i in range(20)]
    del data_folder.labeled["timestamp"]
    dataset, problems = check_data(data_folder.write(), DataConfig(), "blocked")
    assert problems == [] and dataset.audit.order.startswith("not checked") and "taken as time order" in dataset.audit.order


def test_the_overfit_check_takes_one_row_per_window_and_skips_windows_with_two_labels():
    y = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    window_of = np.array([0, 0, 1, 1, 2, 3, 4, 5])  # rows 0/1: one window, two labels; rows 2/3: one window
    spans = np.array([[30, 35], [50, 55], [30, 35], [30, 35], [40, 44], [40, 44], [40, 44], [40, 44]])
    ctx = SimpleNamespace(dataset=SimpleNamespace(y=y, audit=SimpleNamespace(window_of=window_of),
                                                  labeled=SimpleNamespace(expansion=spans)),
                          train=np.arange(8), n_classes=2, spec=InputSpec())
    rows, skipped = overfit_rows(ctx, per_class=3)
    assert rows.tolist() == [2, 6, 4, 5, 7] and skipped == 2
    # a span-aware model reads rows 0 and 1 (one window, two spans) as two inputs: both can be memorised
    rows, skipped = overfit_rows(SimpleNamespace(**{**vars(ctx), "spec": InputSpec(span_channel=True)}), per_class=3)
    assert rows.tolist() == [0, 2, 6, 1, 4, 5] and skipped == 0


def test_a_written_user_layout_folder_declares_its_prediction_bars(user_root, tmp_path):
    settings = resolve_settings(user_root, data_dir=str(user_root), artifacts_dir=str(tmp_path), results=None,
                                device="cpu", profile="quick", overrides=[], seed=17, fresh=False, demo=False)
    assert settings.profile.data.prediction_bars == (30, 74) and not settings.setup_problems
    (tmp_path / "moola_dataset.json").write_text('{"prediction_bars": [74, 30]}')
    bad = resolve_settings(tmp_path, data_dir=str(tmp_path), artifacts_dir=str(tmp_path), results=None,
                           device="cpu", profile="quick", overrides=[], seed=17, fresh=False, demo=False)
    assert "expected [FIRST, LAST] bar numbers" in bad.setup_problems[0]


def test_demo_layout_names_are_checked_and_user_layout_declares_its_prediction_bars(tmp_path):
    common = {"data_dir": None, "artifacts_dir": str(tmp_path), "results": None, "device": "cpu",
              "profile": "quick", "overrides": [], "seed": 17, "fresh": False}
    settings = resolve_settings(tmp_path, demo="user-layout", **common)
    assert settings.demo == "user-layout" and settings.profile.data.prediction_bars == (30, 74)
    assert resolve_settings(tmp_path, demo=True, **common).profile.data.prediction_bars == ()
    with pytest.raises(ValueError, match=r"--demo: expected one of seed, user-layout .*found 'gates'"):
        resolve_settings(tmp_path, demo="gates", **common)
    with pytest.raises(ValueError, match="expected two bar numbers FIRST,LAST"):
        resolve_settings(tmp_path, demo=False, **{**common, "overrides": ["data.prediction_bars=74,30"]})
    with pytest.raises(ValueError, match="one decision point or the other"):
        resolve_settings(tmp_path, demo=False, **{**common, "overrides": ["data.span_bars=31", "data.visible_bars=75"]})


@pytest.mark.slow
def test_gate_0_on_the_user_layout_runs_past_under_blocked_and_names_the_effective_n(pytester, user_root):
    from .gate_runs import run_gates

    output = []
    lines = run_gates(pytester, user_root, "--end-gate", "0", overrides=["data.prediction_bars=30,74"], output=output)
    gate0 = lines["0_verify_env"]
    assert gate0["status"] == "warning" and gate0["reason"].count("_exp_") >= 2  # the conflicting pair, by id
    assert gate0["data"]["n_windows"] == 66 and gate0["data"]["n_labeled"] == 98
    assert "98 labeled rows from 66 distinct windows" in output[0]  # the pytest header
    assert "gate 3 leaves" in output[0]  # the counts, in the table under the gates


@pytest.mark.slow
@pytest.mark.parametrize("overrides, inputs", [
    (["data.prediction_bars=30,74"], {"visible_bars": 0, "span_channel": True, "span_bars": 31}),  # the default
    (["data.visible_bars=75"], {"visible_bars": 75, "span_channel": True, "span_bars": 0}),
])
def test_span_aware_inputs_run_through_gates_4_to_7_and_predict(pytester, user_root, overrides, inputs):
    from moola.deploy.model import load_deployed

    from .gate_runs import TINY, run_gates

    # the tiny model's label confidence is low: a lower quality bar lets gate 5 (and so gate 7) run
    lines = run_gates(pytester, user_root, "--start-gate", "4", "--gate-policy", "point",
                      overrides=[*TINY, "augment.quality_threshold=0.5", *overrides])
    assert not [g for g, line in lines.items() if line["status"] == "error"], {g: l["reason"] for g, l in lines.items()}
    assert lines["4_finetune_enhanced"]["data"]["inputs"] == {"shared_channels": True, **inputs}
    table, _ = read_windows(user_root / "processed/train_clean.parquet", labeled=True)
    for name, kind in (("enhanced_finetuned_v1.pt", "finetuned"), ("ensemble_v1.pt", "ensemble")):
        model = load_deployed(pytester.path / "run/artifacts/models" / name, kind)  # the ensemble: reference checked
        assert {k: model.input[k] for k in inputs} == inputs
        proba = model.predict_proba(table.features, spans=table.expansion)
        live = model.predict_proba(table.features[:, :75], spans=table.expansion)  # windows stop at bar 74
        np.testing.assert_allclose(proba, live)
        with pytest.raises(ValueError, match="expansion_start and expansion_end"):
            model.predict_proba(table.features)


@pytest.mark.parametrize("start, expected", [
    ([3.0] * 20, None),  # whole numbers stored as floats (pandas after a NaN): read as integers
    ([3.0] * 19 + [float("nan")], "null, NaN or fractional values in rows 19 (1 in all)"),
    ([3.5] + [3.0] * 19, "null, NaN or fractional values in rows 0 (1 in all)"),
])
def test_spans_stored_as_floats_are_read_or_refused_never_dropped(data_folder, start, expected):
    data_folder.labeled["expansion_start"] = np.array(start)
    data_folder.labeled["expansion_end"] = np.full(20, 6.0)
    root = data_folder.write()
    table, problems = read_windows(root / "processed/train_clean.parquet", labeled=True)
    if expected is None:
        assert problems == [] and table.expansion.dtype == np.int64 and (table.expansion == [3, 6]).all()
    else:
        assert any(expected in str(p) for p in problems), problems
        assert any(expected in str(p) for p in check_data(root, DataConfig())[1])


def test_one_span_column_without_the_other_is_a_problem(data_folder):
    data_folder.labeled["expansion_start"] = np.full(20, 3)
    [problem] = [str(p) for p in check_data(data_folder.write(), DataConfig())[1]]
    assert "only 'expansion_start'" in problem and "add 'expansion_end'" in problem
