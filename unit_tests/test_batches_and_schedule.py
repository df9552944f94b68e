"""Batches never hand BatchNorm a single row; the fine-tuning LR anneals into SWA without a restart."""

import itertools
import logging

import numpy as np
import pytest
import torch

from moola.config import FinetuneConfig
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.stages.classifiers import finetune_groups, finetune_options, finetune_schedule
from moola.training.batches import batch_bounds
from moola.training.classifier import fit_classifier

CPU = torch.device("cpu")


@pytest.mark.parametrize("n_rows, batch_size", [(81, 8), (225, 8), (17, 8), (9, 8), (16, 8), (3, 2), (7, 3)])
def test_batches_cover_every_row_once_and_never_hold_a_single_row(n_rows, batch_size):
    bounds = batch_bounds(n_rows, batch_size)
    rows = np.concatenate([np.arange(begin, end) for begin, end in bounds])
    assert rows.tolist() == list(range(n_rows))
    sizes = [end - begin for begin, end in bounds]
    assert min(sizes) > 1 and max(sizes) <= batch_size + 1
    if n_rows % batch_size == 1:  # the lone row joined the batch before it
        assert sizes[-1] == batch_size + 1 and len(bounds) == n_rows // batch_size


def test_batch_bounds_rejects_a_batch_size_of_zero():
    with pytest.raises(ValueError, match="batch_size"):
        batch_bounds(10, 0)


# 81 = 10 * 8 + 1 train rows (in the slow set: 2.3 s); 25 = 3 * 8 + 1 (the same remainder, fast)
@pytest.mark.parametrize("n_rows", [pytest.param(81, marks=pytest.mark.slow), 25])
def test_fitting_n_equal_one_mod_batch_size_rows_trains_and_refreshes_batchnorm(n_rows):
    # Before batch_bounds: "Expected more than 1 value per channel when training" from the head's
    # BatchNorm, in the epoch loop and again in update_bn for the EMA/SWA copies.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, 12, 4)).astype(np.float32)
    y = np.arange(n_rows) % 2
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=2)
    config = FinetuneConfig(epochs=4, frozen_epochs=1, unfreeze_every=1, batch_size=8, ema_half_life=5,
                            swa_fraction=0.5)
    phases, lrs = finetune_schedule(config, 2)
    fit = fit_classifier(model, x, y, finetune_groups(model), phases, finetune_options(config, lrs, 4), CPU, 0)
    assert sum(fit.steps.values()) == 4 * (n_rows // 8)  # the merged batch is one step, not two
    assert fit.swa_bn_refreshed and int(fit.swa.n_averaged) == 2


def lr_per_step(config: FinetuneConfig, n_rows: int = 16) -> list:
    """The head group's LR at every optimizer step of a fit (read from AdamW as it steps)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n_rows, 12, 4)).astype(np.float32), np.arange(n_rows) % 2
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=1)
    phases, lrs = finetune_schedule(config, 1)
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(next(g["lr"] for g in self.param_groups if g["name"] == "classifier"))
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        fit_classifier(model, x, y, finetune_groups(model), phases,
                       finetune_options(config, lrs, sum(p.epochs for p in phases)), CPU, 0)
    finally:
        torch.optim.AdamW.step = original
    return seen


def test_lr_anneals_into_the_swa_phase_and_holds_there_without_a_restart():
    config = FinetuneConfig(epochs=12, frozen_epochs=2, unfreeze_every=2, batch_size=4, swa_fraction=0.25,
                            swa_lr_factor=0.5, head_lr=1e-3)
    lrs = lr_per_step(config)  # 4 steps an epoch, 48 steps, the last 3 epochs (12 steps) under SWA
    swa_steps = lrs[-12:]
    # SWALR anneals over one epoch from where the cosine left off, which is already ~the SWA LR.
    assert swa_steps == pytest.approx([0.5e-3] * 12, rel=0.01)
    assert swa_steps[-4:] == pytest.approx([0.5e-3] * 4)
    peak = int(np.argmax(lrs))
    after_warmup = lrs[peak:]
    # Non-increasing from the warmup's peak to the end: the seed's schedule fell to ~0 and jumped
    # back to 0.5x base when SWA started (…7.9e-5, 5.1e-6, 5.0e-4…).
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after_warmup)), after_warmup
    assert min(lrs[peak:-12]) >= 0.5e-3 - 1e-9


def test_without_swa_the_cosine_ends_near_zero():
    lrs = lr_per_step(FinetuneConfig(epochs=8, frozen_epochs=2, unfreeze_every=2, batch_size=4, swa_fraction=0.0))
    assert lrs[-1] < 0.05 * max(lrs)


def test_a_batch_size_of_one_with_batchnorm_is_a_clear_error_not_a_crash():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 12, 4)).astype(np.float32), np.arange(10) % 2
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=1)
    config = FinetuneConfig(epochs=2, frozen_epochs=1, unfreeze_every=1, batch_size=1, swa_fraction=0.0)
    phases, lrs = finetune_schedule(config, 1)
    with pytest.raises(ValueError, match="batch_size 1 .*BatchNorm.*--set finetune.batch_size=8"):
        fit_classifier(model, x, y, finetune_groups(model), phases, finetune_options(config, lrs, 2), CPU, 0)


def test_a_fits_epochs_are_logged_at_debug_level_only(caplog):
    # the live log (INFO) shows one line per fit; every epoch with --log-cli-level=DEBUG
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 12, 4)).astype(np.float32), np.arange(16) % 2
    torch.manual_seed(0)
    model = EnhancedSimpleLSTM(4, hidden_size=8, num_layers=1)
    config = FinetuneConfig(epochs=3, frozen_epochs=1, unfreeze_every=1, batch_size=8)
    phases, lrs = finetune_schedule(config, 1)
    caplog.set_level(logging.DEBUG, logger="moola.training.classifier")
    fit_classifier(model, x, y, finetune_groups(model), phases, finetune_options(config, lrs, 1), CPU, 0)
    epochs = [record for record in caplog.records if " epoch " in record.getMessage()]
    assert len(epochs) == 3 and {record.levelno for record in epochs} == {logging.DEBUG}
