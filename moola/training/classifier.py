"""Supervised fitting: named parameter groups trained in phases, with optional L2-SP, EMA and SWA.

One AdamW optimizer holds every group for the whole run; a phase says which groups train
(the rest have `requires_grad` off, so AdamW skips them). The learning rate of each group is
its base LR times one schedule shared by all groups: linear warmup, then a cosine that ends
where SWA starts, at `swa_lr_factor` × base (at 0 without SWA). `SWALR` then holds each group at
that LR while SWA averages one snapshot per epoch: the LR anneals into the SWA phase, never
restarts (the schedule of Izmailov et al. 2018: decay to the SWA LR, then constant).

Batches come from `batch_bounds`: a last batch of one row is merged into the one before it,
because BatchNorm cannot train on (or `update_bn` average over) a single row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import SWALR

from moola.training.augment import augment_batch
from moola.training.averaging import has_batchnorm, make_ema, make_swa, refresh_batchnorm
from moola.training.batches import batch_bounds, to_device
from moola.training.pretrain import cosine_lr
from moola.training.regularizers import L2SP, FocalLoss

log = logging.getLogger(__name__)
LOSSES = ("weighted_ce", "focal")


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs in which only the named parameter groups train."""

    name: str
    epochs: int
    trainable: tuple  # group names


@dataclass(frozen=True)
class Augmentation:
    jitter_sigma: float
    scale_sigma: float
    warp_sigma: float
    prob: float
    marker_channels: int = 0  # trailing 0/1 channels (the span) that jitter and scaling leave alone


@dataclass(frozen=True)
class FitOptions:
    batch_size: int
    lrs: dict  # group name -> base learning rate
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 = no clipping
    weight_decay: float = 0.0  # AdamW decay, for groups no L2-SP term covers
    augmentation: Augmentation | None = None
    loss: str = "weighted_ce"  # "weighted_ce" | "focal"
    focal_gamma: float = 2.0
    ema_half_life: float = 0.0  # optimizer steps; 0 = no EMA
    swa_epochs: int = 0  # last epochs averaged by SWA; 0 = no SWA
    swa_lr_factor: float = 0.5  # LR the schedule anneals to and SWA holds, as a share of each group's base LR
    warmup_fraction: float = 0.1  # share of the pre-SWA steps spent warming up


@dataclass
class FitResult:
    model: nn.Module  # raw weights, eval mode
    history: list  # per epoch: {"phase", "epoch", "loss", "train_acc", "lr", "lrs": {group: lr}}
    steps: dict = field(default_factory=dict)  # optimizer steps per phase
    lrs: dict = field(default_factory=dict)  # phase -> group -> lr at the phase's first step
    trainable: dict = field(default_factory=dict)  # phase -> groups that trained
    ema: nn.Module | None = None  # AveragedModel, eval mode
    swa: nn.Module | None = None  # AveragedModel, eval mode (BatchNorm refreshed)
    l2sp_penalty: float | None = None  # at the end of training
    swa_bn_refreshed: bool = False


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (k * n_c) from the train labels (1.0 each when balanced)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def child_groups(model: nn.Module) -> dict:
    """One group per top-level submodule."""
    return {name: list(child.parameters()) for name, child in model.named_children()}


def lstm_layer_groups(lstm: nn.LSTM, prefix: str) -> dict:
    """One group per LSTM layer, both directions: `{prefix}.l0` (bottom) … `{prefix}.l{L-1}` (top)."""
    groups: dict = {f"{prefix}.l{k}": [] for k in range(lstm.num_layers)}
    for name, parameter in lstm.named_parameters():  # e.g. weight_hh_l1_reverse
        layer = int(name.split("_l")[-1].split("_")[0])
        groups[f"{prefix}.l{layer}"].append(parameter)
    return groups


def make_loss(options: FitOptions, y: np.ndarray, n_classes: int) -> nn.Module:
    if options.loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, found {options.loss!r}")
    weight = class_weights(y, n_classes)
    return nn.CrossEntropyLoss(weight=weight) if options.loss == "weighted_ce" else FocalLoss(options.focal_gamma, weight)


def _check(groups: dict, phases: list, options: FitOptions) -> None:
    unknown = {g for phase in phases for g in phase.trainable} - set(groups)
    missing_lr = set(groups) - set(options.lrs)
    if unknown or missing_lr:
        raise ValueError(f"phases name groups {sorted(unknown)} and groups {sorted(missing_lr)} lack an LR; "
                         f"groups are {sorted(groups)}")
    if options.swa_epochs >= sum(p.epochs for p in phases):
        raise ValueError(f"swa_epochs {options.swa_epochs} must be fewer than the {sum(p.epochs for p in phases)} epochs")


def fit_classifier(model: nn.Module, windows: np.ndarray, y: np.ndarray, groups: dict, phases: list,
                   options: FitOptions, device: torch.device, seed: int, n_classes: int = 2,
                   l2sp: L2SP | None = None) -> FitResult:
    """Train `model` on normalised windows `(n, T, C)` and labels `(n,)` through `phases` in order."""
    _check(groups, phases, options)
    if has_batchnorm(model) and (options.batch_size < 2 or len(windows) < 2):
        raise ValueError(
            f"batch_size {options.batch_size} with {len(windows)} training rows: the model has BatchNorm, which "
            "cannot train on one row at a time; set the gate's batch size to 2 or more (e.g. --set "
            "finetune.batch_size=8, smoke.batch_size=8) and give it at least 2 train rows")
    batch_size = max(1, min(options.batch_size, len(windows)))
    x_all, y_all = torch.from_numpy(windows), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    loss_fn = make_loss(options, y, n_classes).to(device)
    covered = l2sp.parameters() if l2sp is not None else set()
    optimizer = torch.optim.AdamW(
        [{"params": params, "lr": options.lrs[name], "base_lr": options.lrs[name], "name": name,
          "weight_decay": 0.0 if any(id(p) in covered for p in params) else options.weight_decay}
         for name, params in groups.items()])
    bounds = batch_bounds(len(x_all), batch_size)
    steps_per_epoch = len(bounds)
    total_epochs = sum(p.epochs for p in phases)
    swa_start = total_epochs - options.swa_epochs  # first SWA epoch, 0-based
    scheduled_steps = steps_per_epoch * swa_start  # steps on the warmup-cosine schedule
    warmup = max(1, int(scheduled_steps * options.warmup_fraction))
    final_factor = options.swa_lr_factor if options.swa_epochs else 0.0  # where the cosine lands
    ema = make_ema(model, options.ema_half_life) if options.ema_half_life else None
    swa = make_swa(model) if options.swa_epochs else None
    swa_scheduler = None
    result = FitResult(model, [])
    started, step, epoch_index = time.monotonic(), 0, 0
    try:
        for phase in phases:
            trainable = set(phase.trainable)
            for name, params in groups.items():
                for parameter in params:
                    parameter.requires_grad_(name in trainable)
            result.trainable[phase.name] = list(phase.trainable)
            phase_first_step = step
            for epoch in range(1, phase.epochs + 1):
                if swa is not None and epoch_index == swa_start:
                    swa_scheduler = SWALR(optimizer, swa_lr=[g["base_lr"] * options.swa_lr_factor
                                                             for g in optimizer.param_groups],
                                          anneal_epochs=1, anneal_strategy="cos")
                model.train()
                order = torch.randperm(len(x_all), generator=generator)
                loss_sum, correct = 0.0, 0
                for begin, end in bounds:
                    index = order[begin:end]
                    batch = x_all[index]
                    if options.augmentation is not None:
                        a = options.augmentation
                        batch = augment_batch(batch, a.jitter_sigma, a.scale_sigma, a.warp_sigma, a.prob, generator,
                                              a.marker_channels)
                    batch, target = to_device(batch, device), to_device(y_all[index], device)
                    if swa_scheduler is None:
                        factor = cosine_lr(step, scheduled_steps, 1.0, warmup, final_factor)
                        for group in optimizer.param_groups:
                            group["lr"] = group["base_lr"] * factor
                    if step == phase_first_step:
                        result.lrs[phase.name] = {g["name"]: g["lr"] for g in optimizer.param_groups
                                                  if g["name"] in trainable}
                    logits = model(batch)
                    loss = loss_fn(logits, target)
                    if l2sp is not None:
                        loss = loss + l2sp.penalty()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if options.grad_clip:
                        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]
                                                  if p.grad is not None], options.grad_clip)
                    optimizer.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    loss_sum += loss.item() * len(index)
                    correct += int((logits.argmax(1) == target).sum())
                    step += 1
                epoch_index += 1
                if swa_scheduler is not None:
                    swa.update_parameters(model)
                    swa_scheduler.step()
                result.history.append({"phase": phase.name, "epoch": epoch, "loss": loss_sum / len(x_all),
                                       "train_acc": correct / len(x_all), "lr": optimizer.param_groups[-1]["lr"],
                                       # every training group's LR at the epoch's end (frozen groups left out)
                                       "lrs": {g["name"]: g["lr"] for g in optimizer.param_groups
                                               if g["name"] in trainable}})
                elapsed = time.monotonic() - started
                log.debug("%s epoch %d/%d loss %.4f acc %.3f (%.0fs, eta %.0fs)", phase.name, epoch, phase.epochs,
                         loss_sum / len(x_all), correct / len(x_all), elapsed,
                         elapsed / epoch_index * (total_epochs - epoch_index))
            result.steps[phase.name] = step - phase_first_step
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.eval()
    if l2sp is not None:
        with torch.no_grad():
            result.l2sp_penalty = float(l2sp.penalty())
    # BatchNorm running statistics lag weights that kept moving (momentum 0.1 remembers ~10 steps);
    # when pooled features vary little between windows, that lag alone can flip eval predictions.
    # Recompute them for the final weights (raw, EMA, SWA) on the unaugmented train rows.
    batches = [x_all[begin:end] for begin, end in bounds]  # never a single row (BatchNorm)
    refresh_batchnorm(model, batches, device)
    model.eval()
    if swa is not None:
        result.swa_bn_refreshed = refresh_batchnorm(swa, batches, device)
        result.swa = swa.eval()
    if ema is not None:
        refresh_batchnorm(ema, batches, device)
        result.ema = ema.eval()
    return result


@torch.no_grad()
def predict_proba(model: nn.Module, windows: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities `(n, n_classes)` for normalised windows `(n, T, C)`."""
    was_training = model.training
    model.eval()
    try:
        parts = [torch.softmax(model(to_device(torch.from_numpy(windows[b: b + batch_size]), device)), dim=1).cpu()
                 for b in range(0, len(windows), batch_size)]
        return torch.cat(parts).numpy().astype(np.float64)
    finally:
        model.train(was_training)
