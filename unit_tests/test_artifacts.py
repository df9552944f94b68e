from pathlib import Path

import pytest
import torch

from moola.artifacts import (
    CheckpointRefused,
    CheckpointWarning,
    load_cached,
    load_checkpoint,
    load_checkpoint_payload,
    load_encoder_weights,
    save_checkpoint,
)
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.models.masked_autoencoder import MaskedAutoencoder


def test_autoencoder_encoder_loads_fully_into_the_classifier():
    source = MaskedAutoencoder(4, hidden_size=16, num_layers=2)
    model = EnhancedSimpleLSTM(4, hidden_size=16, num_layers=2)
    match = load_encoder_weights(model, source.encoder.state_dict())
    assert match["encoder_match_ratio"] == 1.0
    # Denominator is the encoder's tensors (8 per direction-layer pair x 2 layers), not the classifier's.
    assert match["encoder_tensors"] == len(model.encoder.state_dict()) == 16
    assert len(model.state_dict()) > match["encoder_tensors"]
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)


def test_shape_mismatch_lowers_the_ratio_and_is_named():
    source = MaskedAutoencoder(4, hidden_size=16, num_layers=2)
    model = EnhancedSimpleLSTM(4, hidden_size=32, num_layers=2)
    match = load_encoder_weights(model, source.encoder.state_dict())
    assert match["encoder_match_ratio"] == 0.0
    assert match["encoder_shape_mismatch"]


def test_one_layer_checkpoint_into_two_layer_encoder_loads_half():
    source = MaskedAutoencoder(4, hidden_size=16, num_layers=1)
    model = EnhancedSimpleLSTM(4, hidden_size=16, num_layers=2)
    match = load_encoder_weights(model, source.encoder.state_dict())
    assert match["encoder_match_ratio"] == 0.5
    assert all("_l1" in key for key in match["encoder_missing"])


def test_checkpoint_roundtrip_is_plain_data_and_loads_weights_only(tmp_path):
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=1)
    path = save_checkpoint(tmp_path / "m" / "model.pt", model.state_dict(), {"val_f1": 0.5, "steps": {"a": 3}})
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["metadata"], str)
    state, metadata = load_checkpoint(path)
    assert metadata == {"val_f1": 0.5, "steps": {"a": 3}}
    assert state.keys() == model.state_dict().keys()
    assert not list(tmp_path.glob("m/.*tmp*"))  # the temp file was renamed away


class _Touch:
    """Unpickling this calls Path.touch(marker): a file that asks to run code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def saved_checkpoint(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "encoder_v1.pt", {"w": torch.ones(64, 64)}, {"fingerprint": "abc"})


def test_a_truncated_checkpoint_is_moved_aside_and_treated_as_a_miss(tmp_path):
    path = saved_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.warns(CheckpointWarning, match="unreadable.*moved aside to encoder_v1.pt.unreadable"):
        assert load_cached(path) is None
    assert not path.exists() and (tmp_path / "encoder_v1.pt.unreadable").read_bytes() == data[: len(data) // 2]
    path.write_bytes(b"")  # a second bad file keeps the first one's backup
    with pytest.warns(CheckpointWarning):
        assert load_cached(path) is None
    assert (tmp_path / "encoder_v1.pt.unreadable.1").exists()


def test_a_foreign_torch_file_is_moved_aside_not_overwritten(tmp_path):
    path = tmp_path / "encoder_v1.pt"
    torch.save({"lstm.weight_ih_l0": torch.zeros(4, 4)}, path)  # a bare state dict from another workflow
    with pytest.warns(CheckpointWarning, match="not a moola checkpoint"):
        assert load_cached(path) is None
    assert (tmp_path / "encoder_v1.pt.unreadable").exists()


@pytest.mark.parametrize("protocol", [2, 4])  # torch.save's GLOBAL opcodes; plain pickle's STACK_GLOBAL
def test_a_checkpoint_that_asks_to_run_code_is_refused_loudly_and_never_loaded(tmp_path, protocol):
    path, marker = tmp_path / "encoder_v1.pt", tmp_path / "code_ran"
    torch.save({"state_dict": {}, "metadata": "{}", "hook": _Touch(marker)}, path, pickle_protocol=protocol)
    before = path.read_bytes()
    with pytest.raises(CheckpointRefused, match=r"refused it .*asks to import .*pathlib.*--fresh"):
        load_cached(path)
    assert not marker.exists()  # nothing was executed
    assert path.read_bytes() == before and not list(tmp_path.glob("*.unreadable*"))  # left where it was


def test_a_readable_checkpoint_loads_and_a_missing_one_is_a_miss(tmp_path):
    path = saved_checkpoint(tmp_path)
    state, metadata = load_checkpoint_payload(load_cached(path))
    assert metadata == {"fingerprint": "abc"} and torch.equal(state["w"], torch.ones(64, 64))
    assert load_cached(tmp_path / "absent.pt") is None


@pytest.mark.parametrize("kind", ["plain_pickle", "npz", "truncated_legacy"])
def test_harmless_files_torch_refuses_are_moved_aside_not_reported_as_code(tmp_path, kind):
    import pickle

    import numpy as np

    path = tmp_path / "encoder_v1.pt"
    if kind == "plain_pickle":  # a pickle of plain data, but not torch's format
        path.write_bytes(pickle.dumps({"state_dict": {}, "metadata": "{}"}, protocol=2))
    elif kind == "npz":  # a zip archive of another library
        with open(path, "wb") as stream:
            np.savez(stream, weights=np.zeros(3))
    else:  # torch's legacy (non-zip) format, cut short
        torch.save({"w": torch.ones(256)}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(CheckpointWarning, match="moved aside"):
        assert load_cached(path) is None
    assert (tmp_path / "encoder_v1.pt.unreadable").exists()


def test_a_global_fed_from_the_memo_is_still_refused(tmp_path):
    # Protocol 4: "os" and "system" memoised, then STACK_GLOBAL fed by two memo fetches (BINGET):
    # no string literal stands right before it, so the scan cannot read the name: refuse.
    import pickletools

    path = tmp_path / "encoder_v1.pt"
    program = (b"\x80\x04" + b"\x8c\x02os\x940" + b"\x8c\x06system\x940"  # SHORT_BINUNICODE, MEMOIZE, POP; twice
               + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL -> os.system
               + b"\x8c\x04true\x85R.")  # an argument, TUPLE1, REDUCE, STOP
    assert [op.name for op, _, _ in pickletools.genops(program)][-3:] == ["TUPLE1", "REDUCE", "STOP"]
    path.write_bytes(program)
    with pytest.raises(CheckpointRefused, match="global read from the memo"):
        load_cached(path)
    assert path.exists()
