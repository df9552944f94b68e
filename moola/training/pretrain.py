"""Masked-reconstruction pretraining of the BiLSTM encoder on the unlabeled pool (gate 3)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from moola.config import PretrainConfig
from moola.models.masked_autoencoder import MaskedAutoencoder
from moola.training.masking import make_mask

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    encoder_state: dict  # state dict of the encoder (CPU tensors), best val epoch
    history: list  # per epoch: {"epoch", "train_loss", "val_loss", "lr"}
    best_epoch: int
    best_val_loss: float
    steps: int
    n_windows: int  # windows used (train + held-out)


def cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warmup to `base_lr`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def masked_mse(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked steps only; `(n, T, C)`, `(n, T, C)`, `(n, T)` -> scalar."""
    squared = (reconstruction - target).pow(2).mean(dim=-1)  # (n, T)
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def subsample_pool(n_pool: int, config: PretrainConfig, seed: int) -> np.ndarray:
    """Rows of the pool used for pretraining: all, or a seeded subsample of `max_unlabeled`."""
    if config.max_unlabeled and config.max_unlabeled < n_pool:
        return np.sort(np.random.default_rng(seed).choice(n_pool, config.max_unlabeled, replace=False))
    return np.arange(n_pool)


def pretrain_encoder(windows: np.ndarray, config: PretrainConfig, device: torch.device, seed: int) -> PretrainResult:
    """Pretrain on normalised windows `(N, T, C)`; early-stops on a held-out share, keeps the best weights."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(windows))
    n_val = max(1, round(len(windows) * config.val_fraction))
    train_x = torch.from_numpy(windows[order[n_val:]])
    val_x = torch.from_numpy(windows[order[:n_val]])
    n_steps, n_channels = windows.shape[1:]
    generator = torch.Generator().manual_seed(seed)
    val_mask = make_mask(len(val_x), n_steps, config.mask_strategy, config.mask_ratio, config.patch_size, generator)

    torch.manual_seed(seed)
    model = MaskedAutoencoder(n_channels, config.hidden_size, config.num_layers).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, total_steps // 20)
    history, best_state, best_val, best_epoch, step, stale = [], None, math.inf, 0, 0, 0
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        batch_order = torch.randperm(len(train_x), generator=generator)
        running = 0.0
        for begin in range(0, len(train_x), config.batch_size):
            batch = train_x[batch_order[begin: begin + config.batch_size]]
            mask = make_mask(len(batch), n_steps, config.mask_strategy, config.mask_ratio, config.patch_size, generator)
            batch, mask = batch.to(device), mask.to(device)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, config.lr, warmup)
            loss = masked_mse(model(batch, mask), batch, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running += loss.item() * len(batch)
            step += 1
        val_loss = evaluate_reconstruction(model, val_x, val_mask, device, config.batch_size)
        history.append({"epoch": epoch, "train_loss": running / len(train_x), "val_loss": val_loss,
                        "lr": optimizer.param_groups[0]["lr"]})
        elapsed = time.monotonic() - started
        log.info("pretrain epoch %d/%d train %.4f val %.4f (%.0fs, eta %.0fs)", epoch, config.epochs,
                 running / len(train_x), val_loss, elapsed, elapsed / epoch * (config.epochs - epoch))
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.encoder.state_dict().items()})
        else:
            stale += 1
            if stale >= config.patience:
                log.info("pretrain early stop at epoch %d (best %d)", epoch, best_epoch)
                break
    return PretrainResult(best_state, history, best_epoch, best_val, step, len(windows))


@torch.no_grad()
def evaluate_reconstruction(model: MaskedAutoencoder, windows: torch.Tensor, mask: torch.Tensor,
                            device: torch.device, batch_size: int) -> float:
    """Masked MSE over `windows` with fixed masks, weighted by masked-step count."""
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, len(windows), batch_size):
        batch, batch_mask = windows[begin: begin + batch_size].to(device), mask[begin: begin + batch_size].to(device)
        n_masked = int(batch_mask.sum())
        total += masked_mse(model(batch, batch_mask), batch, batch_mask).item() * n_masked
        count += n_masked
    return total / max(1, count)
