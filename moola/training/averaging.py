"""Weight averaging through `torch.optim.swa_utils`: EMA by half-life, SWA with BatchNorm refresh."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

try:
    from torch.optim.swa_utils import get_ema_multi_avg_fn
except ImportError:  # torch < 2.1 has no multi-tensor EMA helper
    get_ema_multi_avg_fn = None


def ema_decay(half_life_steps: float) -> float:
    """Per-step decay whose weight on a past step halves every `half_life_steps` steps: 0.5 ** (1 / h).

    h = 50 gives 0.98623; a run of 250 steps moves the average through five half-lives.
    """
    if half_life_steps <= 0:
        raise ValueError(f"finetune.ema_half_life: expected a positive number of steps, found {half_life_steps}")
    return 0.5 ** (1.0 / half_life_steps)


def make_ema(model: nn.Module, half_life_steps: float) -> AveragedModel:
    """EMA of parameters and buffers (BatchNorm statistics are averaged too)."""
    decay = ema_decay(half_life_steps)
    if get_ema_multi_avg_fn is not None:
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    return AveragedModel(model, avg_fn=lambda avg, new, _: decay * avg + (1 - decay) * new, use_buffers=True)


def make_swa(model: nn.Module) -> AveragedModel:
    """Equal-weight average of the snapshots passed to `update_parameters`."""
    return AveragedModel(model)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def refresh_batchnorm(model: nn.Module, batches: list, device: torch.device) -> bool:
    """Recompute BatchNorm running statistics for `model`'s current weights (`update_bn`: a plain
    average over `batches`); False when the model has no BatchNorm. Leaves the model in eval mode."""
    if not has_batchnorm(model):
        return False
    update_bn([batch.to(device) for batch in batches], model, device=device)
    model.eval()
    return True
