"""Masked-reconstruction pretraining of the BiLSTM encoder on the unlabeled pool (gate 3).

Resumable: with a `checkpoint` path, the full training state (model, optimizer, scaler, RNG,
history, best weights) is written atomically at every epoch end, and a rerun with the same
fingerprint continues after the last finished epoch. On CPU a resumed run ends with the same
weights as an uninterrupted one.

Distributed (a `World` of N torchrun ranks, `moola.training.pretrain_main`): every rank draws
the same permutation and masks as one process would, takes its contiguous share of each global
batch of `batch_size` rows, and divides its masked squared error by the global batch's
masked-step count; DDP sums the ranks' gradients (`World.wrap`), giving the gradient of the
global batch's masked MSE. So N ranks run the single-process computation (same hyperparameters,
same global batch; only float summation order differs), and the resume file, which holds no
per-rank state, continues under any N.
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
from moola.training.distributed import SINGLE, World, state_digest
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
    world_size: int = 1  # processes that trained it (torchrun ranks)
    windows_per_s: float = 0.0  # training windows per second of training loop (this session's epochs)
    train_s: float = 0.0  # seconds in the training loops of this session's epochs (validation excluded)
    rank_digests: list = None  # sha256 of each rank's final weights (one entry per rank)
    earlier_wall_s: float = 0.0  # wall seconds of the earlier, killed parts this run resumed (the resume file's)
    earlier_device_s: float = 0.0  # and their device-seconds (each part's wall seconds x its ranks)

    @property
    def encoder_state(self) -> dict:
        return encoder_part(self.model_state)

    def fields(self) -> dict:
        """What the encoder's file records of this training (its metadata, besides data and config)."""
        return {"history": self.history, "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                "steps": self.steps, "precision": self.precision, "resumed_from_epoch": self.resumed_from_epoch,
                "n_windows": self.n_windows, "earlier_parts_s": self.earlier_wall_s,
                "earlier_parts_device_s": self.earlier_device_s,
                "throughput": {"windows_per_s": self.windows_per_s, "train_s": self.train_s,
                               "note": "training windows per second of the training loops this session ran "
                                       "(validation and start-up excluded)"}}


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
    return masked_sse(reconstruction, target, mask) / mask.sum().clamp(min=1)


def masked_sse(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked steps of the squared error averaged over channels (`masked_mse`'s numerator)."""
    squared = (reconstruction.float() - target.float()).pow(2).mean(dim=-1)  # (n, T)
    return (squared * mask).sum()


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
                     keep_checkpoint: bool = False, world: World = SINGLE) -> PretrainResult:
    """Pretrain on normalised windows `(N, T, C)`; early-stops on a held-out share, keeps the best weights.

    `windows` may be a read-only memory map: batches are gathered from it row by row, so a rank
    never holds the pool. `checkpoint`: where to keep the resumable state, written by rank 0
    (removed when training finishes, unless `keep_checkpoint`: then the caller removes it once
    the result is safely saved). `on_epoch_end(epoch)`: called after each epoch's checkpoint
    (tests use it to interrupt). `world`: the torchrun ranks training together (module docstring).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(windows))
    n_val = max(1, round(len(windows) * config.val_fraction))
    train_rows, val_rows = order[n_val:], order[:n_val]
    n_steps, n_channels = windows.shape[1:]
    generator = torch.Generator().manual_seed(seed)
    val_mask = make_mask(n_val, n_steps, config.mask_strategy, config.mask_ratio, config.patch_size, generator)

    torch.manual_seed(seed)
    model = MaskedAutoencoder(n_channels, config.hidden_size, config.num_layers).to(device)
    net = world.wrap(model, device)  # DDP when several ranks: backward sums their gradients
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    precision, autocast_dtype = precision_for(device, config.mixed_precision)
    scaler = _grad_scaler() if precision == "fp16" else None
    autocast = (lambda: torch.autocast("cuda", dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    bounds = batch_bounds(len(train_rows), config.batch_size)
    steps_per_epoch = len(bounds)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, total_steps // 20)
    history, best_state, best_val, best_epoch, step, stale, first_epoch = [], None, math.inf, 0, 0, 0, 1

    # A damaged resume file (an interrupted copy) is moved aside and training starts over. Rank 0
    # reads it first (and sets a damaged one aside); the other ranks then read what is left.
    saved = None
    # what the parts of this pretraining before a kill took (a resume continues the count, on any --nproc)
    earlier_wall_s = earlier_device_s = 0.0
    if checkpoint is not None and world.main:
        saved = load_cached(checkpoint, expect=_is_resume_state)
    world.barrier()
    if checkpoint is not None and not world.main:
        saved = load_cached(checkpoint, expect=_is_resume_state)
    if saved is not None:
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            generator.set_state(saved["generator"])
            history, best_state, best_val = saved["history"], saved["best_state"], saved["best_val"]
            best_epoch, step, stale, first_epoch = saved["best_epoch"], saved["step"], saved["stale"], saved["epoch"] + 1
            earlier_wall_s = float(saved.get("wall_s", 0.0))
            earlier_device_s = float(saved.get("device_s", earlier_wall_s))
            log.info("pretrain resumes after epoch %d from %s", saved["epoch"], checkpoint)
        else:
            log.info("ignoring %s: it belongs to another data/config fingerprint", checkpoint)
    resumed_from = first_epoch - 1
    if world.size > 1:  # every rank must continue from the same point, or DDP would train apart
        positions = world.gather((first_epoch, step))
        if len(set(positions)) != 1:
            raise RuntimeError(f"{checkpoint}: the ranks read different resume points (epoch, step) {positions}; "
                               "delete the file to start over")

    val_x = torch.from_numpy(np.asarray(windows[val_rows])) if world.size == 1 else None
    started, train_s, seen = time.monotonic(), 0.0, 0
    for epoch in range(first_epoch, config.epochs + 1):
        if stale >= config.patience:
            break  # the run that wrote the checkpoint had already stopped early
        net.train()
        batch_order = torch.randperm(len(train_rows), generator=generator).numpy()
        running, running_reconstruction = 0.0, 0.0
        epoch_started = time.monotonic()
        for begin, end in bounds:
            rows = train_rows[batch_order[begin:end]]
            mask = make_mask(len(rows), n_steps, config.mask_strategy, config.mask_ratio, config.patch_size, generator)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, config.lr, warmup)
            if world.size == 1:
                batch, mask = to_device(torch.from_numpy(np.asarray(windows[rows])), device), to_device(mask, device)
                with autocast():
                    reconstruction, features = model(batch, mask, return_features=True)
                    reconstruction_loss = masked_mse(reconstruction, batch, mask)
                    loss = reconstruction_loss
                    if config.anti_collapse_weight:
                        loss = loss + config.anti_collapse_weight * variance_penalty(features)
                logged, logged_reconstruction = loss.item(), reconstruction_loss.item()
            else:
                loss, logged, logged_reconstruction = _rank_loss(net, windows, rows, mask, config, device, world, autocast)
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
            running += logged * len(rows)
            running_reconstruction += logged_reconstruction * len(rows)
            step += 1
        running, running_reconstruction = world.sum([running, running_reconstruction], device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s += time.monotonic() - epoch_started
        seen += len(train_rows)
        if world.size == 1:
            val_loss = evaluate_reconstruction(model, val_x, val_mask, device, config.batch_size)
        else:
            val_loss = _sharded_val_loss(model, windows, val_rows, val_mask, device, config.batch_size, world)
        history.append({"epoch": epoch, "train_loss": running / len(train_rows),
                        "train_reconstruction": running_reconstruction / len(train_rows), "val_loss": val_loss,
                        "lr": optimizer.param_groups[0]["lr"]})
        elapsed = time.monotonic() - started
        done = epoch - first_epoch + 1
        # about ten live lines per pretraining (every epoch at DEBUG level)
        level = logging.INFO if (epoch % max(1, config.epochs // 10) == 0 or epoch in (1, config.epochs)) else logging.DEBUG
        log.log(level, "pretrain epoch %d/%d train %.4f val %.4f (%.0fs, eta %.0fs, %.0f windows/s)", epoch, config.epochs,
                 running / len(train_rows), val_loss, elapsed, elapsed / done * (config.epochs - epoch),
                 seen / max(train_s, 1e-9))
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
        if checkpoint is not None and world.main:
            save_atomic(Path(checkpoint), {
                "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                "generator": generator.get_state(), "history": history, "best_state": best_state,
                "best_val": best_val, "best_epoch": best_epoch, "step": step, "stale": stale,
                "wall_s": earlier_wall_s + elapsed, "device_s": earlier_device_s + elapsed * world.size})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if stale >= config.patience:
            log.info("pretrain early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    if checkpoint is not None and not keep_checkpoint and world.main:
        Path(checkpoint).unlink(missing_ok=True)
    digests = world.gather(state_digest(best_state or {})) if world.backend else None  # under torchrun, N >= 1
    return PretrainResult(best_state, history, best_epoch, best_val, step, len(windows), precision, resumed_from,
                          world.size, seen / train_s if train_s else 0.0, train_s, digests, earlier_wall_s,
                          earlier_device_s)


def _rank_loss(net, windows, rows: np.ndarray, mask: torch.Tensor, config: PretrainConfig, device: torch.device,
               world: World, autocast) -> tuple[torch.Tensor, float, float]:
    """This rank's loss on its share of the global batch `rows` (masks drawn for the whole batch).

    The ranks' gradients are summed (`World.wrap`'s hook), so each rank's masked squared error
    is divided by the global batch's masked-step count: the sum is the gradient of the global
    batch's masked MSE, and each rank's backward sees the magnitudes one process sees (what fp16
    loss scaling needs). The anti-collapse penalty is computed from the whole global batch's
    statistics (`_global_variance_penalty`). A rank whose share is empty (a global batch smaller
    than the world) runs one zero row with no masked step and weight 0: every rank must join each
    gradient all-reduce. Returns (loss, logged loss share, logged reconstruction share): summed
    over the ranks, the shares are the global batch's loss and masked MSE.
    """
    begin, end = world.share(len(rows))
    weight = 1.0 if end > begin else 0.0
    global_count = mask.sum().clamp(min=1).to(device)
    if weight:
        batch = to_device(torch.from_numpy(np.asarray(windows[rows[begin:end]])), device)
        local_mask = to_device(mask[begin:end], device)
    else:
        batch = torch.zeros((1,) + tuple(windows.shape[1:]), device=device)
        local_mask = torch.zeros((1, windows.shape[1]), dtype=mask.dtype, device=device)
    with autocast():
        reconstruction, features = net(batch, local_mask, return_features=True)
        share = masked_sse(reconstruction, batch, local_mask) / global_count
        loss = share
        penalty_share = torch.zeros((), device=device)
        if config.anti_collapse_weight:
            # each rank holds the global penalty; its gradient reaches every rank through the
            # autograd-aware all-reduce, N times over the sum: hence / N
            penalty_share = config.anti_collapse_weight * _global_variance_penalty(features, weight) / world.size
            loss = loss + penalty_share
    return loss, (share + penalty_share).item(), share.item()


def _global_variance_penalty(features: torch.Tensor, weight: float) -> torch.Tensor:
    """`variance_penalty` over the whole global batch: each feature's count, sum and sum of squares
    (float64) summed over the ranks by the autograd-aware all-reduce, then the unbiased std."""
    from torch.distributed.nn.functional import all_reduce

    flat = features.double().reshape(-1, features.shape[-1]) * weight  # weight 0: an empty share adds nothing
    count = torch.full((1,), flat.shape[0] * weight, dtype=torch.float64, device=flat.device)
    stats = all_reduce(torch.cat([flat.sum(dim=0), flat.pow(2).sum(dim=0), count]))
    width = flat.shape[1]
    total, squares, n = stats[:width], stats[width: 2 * width], stats[-1]
    variance = ((squares - total.pow(2) / n) / (n - 1)).clamp(min=0)
    std = torch.sqrt(variance + 1e-4)
    return torch.relu(1.0 - std).mean().float()


@torch.no_grad()
def _sharded_val_loss(model: MaskedAutoencoder, windows, rows: np.ndarray, mask: torch.Tensor, device: torch.device,
                      batch_size: int, world: World) -> float:
    """`evaluate_reconstruction` over `windows[rows]`, batch i scored by rank i mod N, sums all-reduced."""
    model.eval()
    total, count = 0.0, 0
    for index, begin in enumerate(range(0, len(rows), batch_size)):
        if index % world.size != world.rank:
            continue
        batch = to_device(torch.from_numpy(np.asarray(windows[rows[begin: begin + batch_size]])), device)
        batch_mask = to_device(mask[begin: begin + batch_size], device)
        n_masked = int(batch_mask.sum())
        total += masked_mse(model(batch, batch_mask), batch, batch_mask).item() * n_masked
        count += n_masked
    total, count = world.sum([total, count], device)
    return total / max(1, count)


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
