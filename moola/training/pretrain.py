"""Masked-reconstruction pretraining of the BiLSTM encoder on the unlabeled pool (gate 3).

Resumable: with a `checkpoint` path, the full training state (model, optimizer, scaler, RNG,
history, best weights) is written atomically at every epoch end, and a rerun with the same
fingerprint continues after the last finished epoch. On CPU a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moola.artifacts import load_cached, save_atomic
from moola.config import PretrainConfig
from moola.models.masked_autoencoder import MaskedAutoencoder
from moola.seeding import uses_tf32
from moola.training.batches import batch_bounds, to_device
from moola.training.masking import make_mask

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    model_state: dict  # state dict of the whole autoencoder (CPU tensors) at the best val epoch
    history: list  # per epoch: {"epoch", "train_loss", "train_reconstruction", "val_loss", "lr"}
    best_epoch: int
    best_val_loss: float
    steps: int
    n_windows: int  # windows used (train + held-out)
    precision: str = "fp32"  # "fp32" | "tf32" (cuDNN's default on Ampere+) | "fp16" (autocast + GradScaler)
    resumed_from_epoch: int = 0  # 0 = started fresh

    @property
    def encoder_state(self) -> dict:
        return encoder_part(self.model_state)


def encoder_part(model_state: dict) -> dict:
    """The encoder's tensors of an autoencoder state dict, named as in `BiLSTMEncoder`."""
    return {k[len("encoder."):]: v for k, v in model_state.items() if k.startswith("encoder.")}


def cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int, final_lr: float = 0.0) -> float:
    """Linear warmup to `base_lr`, then cosine decay to `final_lr` at `total_steps` (held after)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def masked_mse(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over masked steps only; `(n, T, C)`, `(n, T, C)`, `(n, T)` -> scalar."""
    squared = (reconstruction.float() - target.float()).pow(2).mean(dim=-1)  # (n, T)
    return (squared * mask).sum() / mask.sum().clamp(min=1)


def variance_penalty(features: torch.Tensor) -> torch.Tensor:
    """Anti-collapse term: mean over feature dims of relu(1 - std), std over every (window, step).

    Zero while each of the 2H features varies with std >= 1; grows as the encoder's outputs
    collapse toward a constant. `(n, T, 2H)` -> scalar.
    """
    flat = features.float().reshape(-1, features.shape[-1])  # (n * T, 2H)
    std = torch.sqrt(flat.var(dim=0) + 1e-4)
    return torch.relu(1.0 - std).mean()


def precision_for(device: torch.device, enabled: bool) -> tuple[str, torch.dtype | None]:
    """What the LSTM runs in: fp32 (TF32 math on Ampere+ CUDA, see `uses_tf32`), or with `enabled`
    on CUDA fp16 autocast with a GradScaler.

    Never bf16: under autocast, torch's cuDNN RNN kernel casts the LSTM's input and weights to
    fp16 whatever dtype autocast was given (`_cudnn_rnn`'s autocast wrapper), so "bf16" would
    train the LSTM in fp16 without the loss scaling fp16 needs, and record the wrong precision.
    Asking for fp16 makes what runs, what is scaled and what is recorded the same thing.
    CPU and MPS stay fp32.
    """
    if device.type != "cuda":
        return "fp32", None
    if enabled:
        return "fp16", torch.float16
    return ("tf32" if uses_tf32(device) else "fp32"), None


def _grad_scaler():
    """torch.amp.GradScaler("cuda") where it exists (torch >= 2.3); torch.cuda.amp's on torch 2.1."""
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def subsample_pool(n_pool: int, config: PretrainConfig, seed: int) -> np.ndarray:
    """Rows of the pool used for pretraining: all, or a seeded subsample of `max_unlabeled`."""
    if config.max_unlabeled and config.max_unlabeled < n_pool:
        return np.sort(np.random.default_rng(seed).choice(n_pool, config.max_unlabeled, replace=False))
    return np.arange(n_pool)


def _is_resume_state(payload) -> bool:
    return isinstance(payload, dict) and {"fingerprint", "epoch", "model", "optimizer"} <= set(payload)


def pretrain_encoder(windows: np.ndarray, config: PretrainConfig, device: torch.device, seed: int,
                     checkpoint: Path | None = None, fingerprint: str = "", on_epoch_end=None,
                     keep_checkpoint: bool = False) -> PretrainResult:
    """Pretrain on normalised windows `(N, T, C)`; early-stops on a held-out share, keeps the best weights.

    `checkpoint`: where to keep the resumable state (removed when training finishes, unless
    `keep_checkpoint`: then the caller removes it once the result is safely saved).
    `on_epoch_end(epoch)`: called after each epoch's checkpoint (tests use it to interrupt).
    """
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
    precision, autocast_dtype = precision_for(device, config.mixed_precision)
    scaler = _grad_scaler() if precision == "fp16" else None
    autocast = (lambda: torch.autocast("cuda", dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    bounds = batch_bounds(len(train_x), config.batch_size)
    steps_per_epoch = len(bounds)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, total_steps // 20)
    history, best_state, best_val, best_epoch, step, stale, first_epoch = [], None, math.inf, 0, 0, 0, 1

    # A damaged resume file (an interrupted copy) is moved aside and training starts over.
    saved = load_cached(checkpoint, expect=_is_resume_state) if checkpoint is not None else None
    if saved is not None:
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            generator.set_state(saved["generator"])
            history, best_state, best_val = saved["history"], saved["best_state"], saved["best_val"]
            best_epoch, step, stale, first_epoch = saved["best_epoch"], saved["step"], saved["stale"], saved["epoch"] + 1
            log.info("pretrain resumes after epoch %d from %s", saved["epoch"], checkpoint)
        else:
            log.info("ignoring %s: it belongs to another data/config fingerprint", checkpoint)
    resumed_from = first_epoch - 1

    started = time.monotonic()
    for epoch in range(first_epoch, config.epochs + 1):
        if stale >= config.patience:
            break  # the run that wrote the checkpoint had already stopped early
        model.train()
        batch_order = torch.randperm(len(train_x), generator=generator)
        running, running_reconstruction = 0.0, 0.0
        for begin, end in bounds:
            batch = train_x[batch_order[begin:end]]
            mask = make_mask(len(batch), n_steps, config.mask_strategy, config.mask_ratio, config.patch_size, generator)
            batch, mask = to_device(batch, device), to_device(mask, device)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, config.lr, warmup)
            with autocast():
                reconstruction, features = model(batch, mask, return_features=True)
                reconstruction_loss = masked_mse(reconstruction, batch, mask)
                loss = reconstruction_loss
                if config.anti_collapse_weight:
                    loss = loss + config.anti_collapse_weight * variance_penalty(features)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
            running += loss.item() * len(batch)
            running_reconstruction += reconstruction_loss.item() * len(batch)
            step += 1
        val_loss = evaluate_reconstruction(model, val_x, val_mask, device, config.batch_size)
        history.append({"epoch": epoch, "train_loss": running / len(train_x),
                        "train_reconstruction": running_reconstruction / len(train_x), "val_loss": val_loss,
                        "lr": optimizer.param_groups[0]["lr"]})
        elapsed = time.monotonic() - started
        done = epoch - first_epoch + 1
        log.info("pretrain epoch %d/%d train %.4f val %.4f (%.0fs, eta %.0fs)", epoch, config.epochs,
                 running / len(train_x), val_loss, elapsed, elapsed / done * (config.epochs - epoch))
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
        if checkpoint is not None:
            save_atomic(Path(checkpoint), {
                "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                "generator": generator.get_state(), "history": history, "best_state": best_state,
                "best_val": best_val, "best_epoch": best_epoch, "step": step, "stale": stale})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if stale >= config.patience:
            log.info("pretrain early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    if checkpoint is not None and not keep_checkpoint:
        Path(checkpoint).unlink(missing_ok=True)
    return PretrainResult(best_state, history, best_epoch, best_val, step, len(windows), precision, resumed_from)


@torch.no_grad()
def evaluate_reconstruction(model: MaskedAutoencoder, windows: torch.Tensor, mask: torch.Tensor,
                            device: torch.device, batch_size: int) -> float:
    """Masked MSE over `windows` with fixed masks, weighted by masked-step count."""
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, len(windows), batch_size):
        batch = to_device(windows[begin: begin + batch_size], device)
        batch_mask = to_device(mask[begin: begin + batch_size], device)
        n_masked = int(batch_mask.sum())
        total += masked_mse(model(batch, batch_mask), batch, batch_mask).item() * n_masked
        count += n_masked
    return total / max(1, count)
