"""Per-sample augmentation of normalised windows: jitter, scaling, time-warp (fine-tuning)."""

from __future__ import annotations

import torch


def time_warp(batch: torch.Tensor, sigma: float, generator: torch.Generator, n_knots: int = 4) -> torch.Tensor:
    """Resample each window along a random smooth monotone time axis; `(n, T, C)` -> `(n, T, C)`.

    Speeds at `n_knots` knots ~ N(1, sigma) (clamped positive), interpolated, integrated and
    rescaled to span [0, T-1]. Each output bar is a convex mix of two neighbouring input bars;
    because OHLC normalisation is shared across channels and the mix is convex per channel,
    high >= max(open, close) and low <= min(open, close) still hold.
    """
    n, n_steps, _ = batch.shape
    speeds = (1.0 + sigma * torch.randn(n, n_knots, generator=generator)).clamp(min=0.2)  # (n, K)
    speeds = torch.nn.functional.interpolate(speeds.unsqueeze(1), size=n_steps, mode="linear",
                                             align_corners=True).squeeze(1)  # (n, T)
    positions = torch.cumsum(speeds, dim=1)
    positions = (positions - positions[:, :1]) / (positions[:, -1:] - positions[:, :1]) * (n_steps - 1)  # (n, T)
    left = positions.floor().long().clamp(max=n_steps - 2)
    weight = (positions - left).unsqueeze(-1)  # (n, T, 1)
    rows = torch.arange(n).unsqueeze(1)
    return batch[rows, left] * (1 - weight) + batch[rows, left + 1] * weight


def augment_batch(batch: torch.Tensor, jitter_sigma: float, scale_sigma: float, warp_sigma: float,
                  prob: float, generator: torch.Generator, marker_channels: int = 0) -> torch.Tensor:
    """Draw each augmentation independently per sample with probability `prob`; `(n, T, C)` in and out.

    Jitter adds the same noise to all four channels of a bar, and scaling multiplies whole windows
    by a positive factor, so OHLC ordering survives both. The last `marker_channels` channels (the
    0/1 span channel, `moola.data.inputs`) mark bars rather than measure them: the time warp moves
    them with their bars, jitter and scaling leave them alone.
    """
    n, n_steps, n_channels = batch.shape
    values = n_channels - marker_channels  # channels jitter and scaling apply to
    out = batch
    pick = lambda: (torch.rand(n, generator=generator) < prob).view(n, 1, 1)
    if warp_sigma > 0:
        out = torch.where(pick(), time_warp(out, warp_sigma, generator), out)
    if scale_sigma > 0:
        factor = (1.0 + scale_sigma * torch.randn(n, 1, 1, generator=generator)).clamp(min=0.1)
        out = torch.cat([torch.where(pick(), out[..., :values] * factor, out[..., :values]), out[..., values:]], 2)
    if jitter_sigma > 0:
        noise = jitter_sigma * torch.randn(n, n_steps, 1, generator=generator)  # one draw per bar
        out = torch.cat([torch.where(pick(), out[..., :values] + noise, out[..., :values]), out[..., values:]], 2)
    return out
