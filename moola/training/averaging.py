"""Weight averaging through `torch.optim.swa_utils`: EMA by half-life, SWA with BatchNorm refresh."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from moola.training.batches import to_device

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


def reflatten(module: nn.Module) -> nn.Module:
    """Put every recurrent submodule's weights back into one contiguous cuDNN buffer; returns `module`.

    `AveragedModel` deep-copies the model, and in torch 2.1 `RNNBase.__setstate__` does not
    re-flatten: on cuDNN the copy's LSTM would run on scattered weights, warn "RNN module weights
    are not part of single contiguous chunk of memory" at every forward and copy them each call.
    `flatten_parameters` is a no-op off CUDA. Later in-place updates (EMA, SWA) keep the layout.
    """
    for submodule in module.modules():
        if isinstance(submodule, nn.RNNBase):
            submodule.flatten_parameters()
    return module


def make_ema(model: nn.Module, half_life_steps: float) -> AveragedModel:
    """EMA of parameters and buffers (BatchNorm statistics are averaged too)."""
    decay = ema_decay(half_life_steps)
    if get_ema_multi_avg_fn is not None:
        return reflatten(AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True))
    return reflatten(AveragedModel(model, avg_fn=lambda avg, new, _: decay * avg + (1 - decay) * new,
                                   use_buffers=True))


def make_swa(model: nn.Module) -> AveragedModel:
    """Equal-weight average of the snapshots passed to `update_parameters`."""
    return reflatten(AveragedModel(model))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def refresh_batchnorm(model: nn.Module, batches: list, device: torch.device) -> bool:
    """Recompute BatchNorm running statistics for `model`'s current weights (`update_bn`: a plain
    average over `batches`); False when the model has no BatchNorm. Leaves the model in eval mode."""
    if not has_batchnorm(model):
        return False
    update_bn([to_device(batch, device) for batch in batches], model, device=device)
    model.eval()
    return True
