import torch

from moola.artifacts import load_checkpoint, load_encoder_weights, save_checkpoint
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
