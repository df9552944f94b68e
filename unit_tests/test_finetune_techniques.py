"""Each fine-tuning technique does what its name says (issue: pretraining and fine-tuning at full fidelity)."""

import numpy as np
import pytest
import torch
from torch import nn

from moola.config import FinetuneConfig
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.stages.classifiers import HEAD, finetune_groups, finetune_options, finetune_schedule
from moola.training.augment import augment_batch, time_warp
from moola.training.averaging import ema_decay, make_ema, make_swa
from moola.training.classifier import FitOptions, Phase, child_groups, fit_classifier
from moola.training.regularizers import L2SP, FocalLoss

CPU = torch.device("cpu")


def tiny_data(n=24, n_bars=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    x = rng.normal(size=(n, n_bars, 4)).astype(np.float32)
    x[y == 1, :, :] += np.linspace(0, 2, n_bars, dtype=np.float32)[None, :, None]  # a learnable trend
    return x, y


def tiny_model():
    torch.manual_seed(0)
    return EnhancedSimpleLSTM(4, hidden_size=8, num_layers=2)


def test_frozen_groups_are_bit_identical_after_the_frozen_phase():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    x, y = tiny_data()
    fit_classifier(model, x, y, child_groups(model), [Phase("frozen", 2, HEAD)],
                   FitOptions(8, {name: 1e-2 for name in ("encoder", *HEAD)}), CPU, 0)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.classifier[1].weight, tiny_model().classifier[1].weight)


def test_layers_unfreeze_top_first_on_the_configured_schedule():
    config = FinetuneConfig(epochs=12, frozen_epochs=3, unfreeze_every=2)
    phases, _ = finetune_schedule(config, num_layers=2)
    assert [(p.name, p.epochs) for p in phases] == [("frozen", 3), ("unfreeze_l1", 2), ("unfreeze_l0", 7)]
    assert phases[0].trainable == HEAD
    assert phases[1].trainable == ("encoder.l1", *HEAD)
    assert phases[2].trainable == ("encoder.l0", "encoder.l1", *HEAD)


def test_fit_records_which_groups_trained_and_moves_only_those():
    model = tiny_model()
    x, y = tiny_data()
    config = FinetuneConfig(epochs=4, frozen_epochs=1, unfreeze_every=1, batch_size=8)
    phases, lrs = finetune_schedule(config, 2)
    layer0 = [p.clone() for p in finetune_groups(model)["encoder.l0"]]
    layer1 = [p.clone() for p in finetune_groups(model)["encoder.l1"]]
    # Stop after the first unfreeze phase: layer 1 moved, layer 0 did not.
    fit = fit_classifier(model, x, y, finetune_groups(model), phases[:2], FitOptions(8, lrs), CPU, 0)
    assert fit.trainable == {"frozen": list(HEAD), "unfreeze_l1": ["encoder.l1", *HEAD]}
    assert all(torch.equal(a, b) for a, b in zip(layer0, finetune_groups(model)["encoder.l0"]))
    assert not all(torch.equal(a, b) for a, b in zip(layer1, finetune_groups(model)["encoder.l1"]))


def test_discriminative_lrs_have_the_configured_ratios():
    config = FinetuneConfig(head_lr=1e-3, layer_lr_decay=0.3)
    _, lrs = finetune_schedule(config, 2)
    assert lrs["classifier"] == 1e-3
    assert lrs["encoder.l1"] / lrs["classifier"] == pytest.approx(0.3)
    assert lrs["encoder.l0"] / lrs["encoder.l1"] == pytest.approx(0.3)
    model = tiny_model()
    x, y = tiny_data()
    phases, _ = finetune_schedule(FinetuneConfig(epochs=3, frozen_epochs=1, unfreeze_every=1), 2)
    fit = fit_classifier(model, x, y, finetune_groups(model), phases, FitOptions(8, lrs), CPU, 0)
    last = fit.lrs["unfreeze_l0"]  # the same schedule factor multiplies every group
    assert last["encoder.l0"] / last["classifier"] == pytest.approx(0.09)


def test_l2sp_is_zero_at_the_anchor_and_its_gradient_points_back():
    encoder, head = nn.Linear(3, 3), nn.Linear(3, 2)
    l2sp = L2SP.from_modules(encoder, [head], alpha=0.5, beta=0.0)
    assert l2sp.penalty().item() == 0.0
    anchor = encoder.weight.detach().clone()
    with torch.no_grad():
        encoder.weight.add_(1.0)
    penalty = l2sp.penalty()
    penalty.backward()
    # d/dθ α||θ − θ0||² = 2α(θ − θ0): a gradient step moves θ back toward θ0.
    torch.testing.assert_close(encoder.weight.grad, 2 * 0.5 * (encoder.weight.detach() - anchor))
    stepped = encoder.weight.detach() - 0.1 * encoder.weight.grad
    assert (stepped - anchor).norm() < (encoder.weight.detach() - anchor).norm()


def test_l2sp_beta_penalises_only_new_weight_matrices():
    encoder, head = nn.Linear(2, 2), nn.Linear(2, 2)
    l2sp = L2SP.from_modules(encoder, [head], alpha=0.0, beta=2.0)
    assert l2sp.penalty().item() == pytest.approx(2.0 * (head.weight**2).sum().item())


def test_ema_matches_its_closed_form_after_k_steps():
    model = nn.Linear(1, 1, bias=True)  # two parameters
    decay = ema_decay(3)
    assert decay == pytest.approx(0.5 ** (1 / 3))
    ema = make_ema(model, 3)
    values = [1.0, 2.0, 4.0, -1.0, 0.5]
    for value in values:
        with torch.no_grad():
            model.weight.fill_(value)
            model.bias.fill_(-value)
        ema.update_parameters(model)
    # AveragedModel copies the first snapshot, then ema = d * ema + (1 - d) * new.
    expected = values[0]
    for value in values[1:]:
        expected = decay * expected + (1 - decay) * value
    assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert ema.module.bias.item() == pytest.approx(-expected, rel=1e-6)


def test_swa_equals_the_mean_of_its_snapshots():
    model = nn.Linear(2, 1)
    swa = make_swa(model)
    snapshots = []
    for value in (0.0, 1.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        snapshots.append(model.weight.detach().clone())
        swa.update_parameters(model)
    torch.testing.assert_close(swa.module.weight, torch.stack(snapshots).mean(0))


def test_fit_keeps_raw_ema_and_swa_and_refreshes_batchnorm():
    model = tiny_model()
    x, y = tiny_data()
    config = FinetuneConfig(epochs=6, frozen_epochs=1, unfreeze_every=1, batch_size=8, ema_half_life=5,
                            swa_fraction=0.5)
    phases, lrs = finetune_schedule(config, 2)
    options = finetune_options(config, lrs, 6)
    assert options.swa_epochs == 3
    fit = fit_classifier(model, x, y, finetune_groups(model), phases, options, CPU, 0)
    assert fit.ema is not None and fit.swa is not None and fit.swa_bn_refreshed
    assert int(fit.swa.n_averaged) == 3
    assert not torch.equal(fit.swa.module.classifier[1].weight, model.classifier[1].weight)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    torch.testing.assert_close(FocalLoss(0.0)(logits, target), nn.functional.cross_entropy(logits, target))
    assert FocalLoss(2.0)(logits, target) < nn.functional.cross_entropy(logits, target)


def ohlc_valid(batch):
    return bool((batch[..., 1] >= torch.maximum(batch[..., 0], batch[..., 3]) - 1e-5).all()
                and (batch[..., 2] <= torch.minimum(batch[..., 0], batch[..., 3]) + 1e-5).all())


def test_augmentations_keep_shape_and_ohlc_validity_and_differ_per_sample():
    from moola.data.normalize import normalize_windows
    from unit_tests.conftest import ohlc_windows

    batch = torch.from_numpy(normalize_windows(ohlc_windows(np.random.default_rng(0), 1, 30))).repeat(16, 1, 1)
    generator = torch.Generator().manual_seed(0)
    out = augment_batch(batch, 0.05, 0.1, 0.2, 1.0, generator)
    assert out.shape == batch.shape
    assert ohlc_valid(out)
    assert len({tuple(row.flatten().tolist()) for row in out}) == 16  # every copy changed differently
    warped = time_warp(batch, 0.3, generator)
    assert warped.shape == batch.shape and ohlc_valid(warped)
    torch.testing.assert_close(warped[:, 0], batch[:, 0])  # the warp keeps both ends
    torch.testing.assert_close(warped[:, -1], batch[:, -1])


def test_killed_and_resumed_pretraining_ends_with_the_same_weights(tmp_path):
    from moola.config import PretrainConfig
    from moola.training.pretrain import pretrain_encoder

    windows = np.random.default_rng(0).normal(size=(64, 21, 4)).astype(np.float32)
    config = PretrainConfig(hidden_size=8, num_layers=1, epochs=4, batch_size=16, patience=10, patch_size=7)
    whole = pretrain_encoder(windows, config, CPU, 0)

    class Killed(Exception):
        pass

    def kill_after_two(epoch):
        if epoch == 2:
            raise Killed

    checkpoint = tmp_path / "encoder.resume.pt"
    with pytest.raises(Killed):
        pretrain_encoder(windows, config, CPU, 0, checkpoint=checkpoint, fingerprint="f", on_epoch_end=kill_after_two)
    assert checkpoint.is_file()
    resumed = pretrain_encoder(windows, config, CPU, 0, checkpoint=checkpoint, fingerprint="f")
    assert resumed.resumed_from_epoch == 2 and not checkpoint.exists()
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]
    for key, value in whole.encoder_state.items():
        assert torch.equal(value, resumed.encoder_state[key]), key


def test_checkpoint_of_another_fingerprint_is_not_resumed(tmp_path):
    from moola.config import PretrainConfig
    from moola.training.pretrain import pretrain_encoder

    windows = np.random.default_rng(0).normal(size=(32, 14, 4)).astype(np.float32)
    config = PretrainConfig(hidden_size=4, num_layers=1, epochs=2, batch_size=16, patch_size=7)
    checkpoint = tmp_path / "resume.pt"

    def stop(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_encoder(windows, config, CPU, 0, checkpoint=checkpoint, fingerprint="old", on_epoch_end=stop)
    assert pretrain_encoder(windows, config, CPU, 0, checkpoint=checkpoint, fingerprint="new").resumed_from_epoch == 0


def test_anti_collapse_penalty_is_zero_for_spread_features_and_positive_for_constant_ones():
    from moola.training.pretrain import variance_penalty

    assert variance_penalty(torch.randn(8, 10, 6) * 3).item() == 0.0
    assert variance_penalty(torch.ones(8, 10, 6)).item() == pytest.approx(0.99, abs=0.01)


def test_cpu_pretraining_stays_fp32():
    from moola.training.pretrain import precision_for

    assert precision_for(CPU, enabled=True) == ("fp32", None)


def test_batchnorm_statistics_match_the_final_weights_after_fit():
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=2, dropout=0.0)  # no dropout noise in the refresh
    x, y = tiny_data()
    fit_classifier(model, x, y, child_groups(model), [Phase("head", 20, HEAD)],
                   FitOptions(24, {name: 3e-2 for name in ("encoder", *HEAD)}), CPU, 0)
    with torch.no_grad():
        steps = model.encoder(torch.from_numpy(x))
        attended, _ = model.attention(steps, steps, steps, need_weights=False)
        pooled = model.norm(steps + attended).mean(dim=1)  # what the classifier's BatchNorm sees
    torch.testing.assert_close(model.classifier[0].running_mean, pooled.mean(0), atol=1e-5, rtol=1e-4)
