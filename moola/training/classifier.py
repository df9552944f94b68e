"""Supervised fitting in phases (frozen head-only, then unfrozen at per-module LRs) and prediction."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from moola.training.augment import augment_batch
from moola.training.pretrain import cosine_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs; only the top-level submodules named in `lrs` train, each at its LR."""

    name: str
    epochs: int
    lrs: dict  # top-level module name -> learning rate; every other module is frozen


@dataclass(frozen=True)
class Augmentation:
    jitter_sigma: float
    scale_sigma: float
    warp_sigma: float
    prob: float


@dataclass
class FitResult:
    model: nn.Module  # in eval mode
    history: list  # per epoch: {"phase", "epoch", "loss", "train_acc"}
    steps: dict = field(default_factory=dict)  # optimizer steps per phase
    lrs: dict = field(default_factory=dict)  # per phase: module -> lr at its start


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (k * n_c) from the train labels (1.0 each when balanced)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def _set_trainable(model: nn.Module, names: set) -> list:
    for name, child in model.named_children():
        for parameter in child.parameters():
            parameter.requires_grad_(name in names)
    own = [n for n, _ in model.named_children()]
    unknown = names - set(own)
    if unknown:
        raise ValueError(f"phase names modules {sorted(unknown)} that {type(model).__name__} lacks; it has {own}")
    return own


def fit_classifier(model: nn.Module, windows: np.ndarray, y: np.ndarray, phases: list, batch_size: int,
                   device: torch.device, seed: int, weight_decay: float = 0.0, grad_clip: float = 1.0,
                   augmentation: Augmentation | None = None, n_classes: int = 2) -> FitResult:
    """Train `model` on normalised windows `(n, T, C)` and labels `(n,)` through `phases` in order."""
    if batch_size < 1 or batch_size > len(windows):
        batch_size = max(1, min(batch_size, len(windows)))
    x_all, y_all = torch.from_numpy(windows), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y, n_classes).to(device))
    result = FitResult(model, [])
    started = time.monotonic()
    total_epochs = sum(p.epochs for p in phases)
    done = 0
    try:
        for phase in phases:
            _set_trainable(model, set(phase.lrs))
            groups = [{"params": [p for p in getattr(model, name).parameters()], "lr": lr, "base_lr": lr}
                      for name, lr in phase.lrs.items()]
            optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
            steps_per_epoch = math.ceil(len(x_all) / batch_size)
            phase_steps = steps_per_epoch * phase.epochs
            result.lrs[phase.name] = dict(phase.lrs)
            step = 0
            for epoch in range(1, phase.epochs + 1):
                model.train()
                order = torch.randperm(len(x_all), generator=generator)
                loss_sum, correct = 0.0, 0
                for begin in range(0, len(x_all), batch_size):
                    index = order[begin: begin + batch_size]
                    batch = x_all[index]
                    if augmentation is not None:
                        batch = augment_batch(batch, augmentation.jitter_sigma, augmentation.scale_sigma,
                                              augmentation.warp_sigma, augmentation.prob, generator)
                    batch, target = batch.to(device), y_all[index].to(device)
                    for group in optimizer.param_groups:
                        group["lr"] = cosine_lr(step, phase_steps, group["base_lr"], max(1, phase_steps // 10))
                    logits = model(batch)
                    loss = loss_fn(logits, target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], grad_clip)
                    optimizer.step()
                    loss_sum += loss.item() * len(index)
                    correct += int((logits.argmax(1) == target).sum())
                    step += 1
                done += 1
                result.history.append({"phase": phase.name, "epoch": epoch, "loss": loss_sum / len(x_all),
                                       "train_acc": correct / len(x_all)})
                elapsed = time.monotonic() - started
                log.info("%s epoch %d/%d loss %.4f acc %.3f (%.0fs, eta %.0fs)", phase.name, epoch, phase.epochs,
                         loss_sum / len(x_all), correct / len(x_all), elapsed,
                         elapsed / done * (total_epochs - done))
            result.steps[phase.name] = step
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.eval()
    return result


@torch.no_grad()
def predict_proba(model: nn.Module, windows: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities `(n, n_classes)` for normalised windows `(n, T, C)`."""
    was_training = model.training
    model.eval()
    try:
        parts = [torch.softmax(model(torch.from_numpy(windows[b: b + batch_size]).to(device)), dim=1).cpu()
                 for b in range(0, len(windows), batch_size)]
        return torch.cat(parts).numpy().astype(np.float64)
    finally:
        model.train(was_training)
