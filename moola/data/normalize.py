"""The one model-input transform: per window, scale-free (SPEC §2).

Raw NQ prices sit near 20,000; an LSTM fed those saturates, and fp16's spacing there is 16 points.
Every model, MiniRocket included, sees `normalize_windows(x)`: each window centred on its own
mean and divided by its own standard deviation. For OHLC the statistics are shared by the four
channels, so a bar's high stays above its close after the transform; for generic series each
channel has its own. Multiplying a window by any c > 0 leaves the output unchanged:
(c·x − c·mean) / (c·std) = (x − mean) / std.
"""

from __future__ import annotations

import numpy as np


def normalize_windows(windows: np.ndarray, shared_channels: bool = True) -> np.ndarray:
    """Per-window z-score.

    Parameters
    ----------
    windows : (N, T, C) float array of raw values.
    shared_channels : one mean/std per window over all channels (OHLC) instead of per channel.

    Returns
    -------
    (N, T, C) float32, zero mean and unit std per window (per channel if not shared);
    a constant window maps to zeros.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected windows of shape (N, T, C), found shape {x.shape}; "
                         "add a channel axis with x[..., None] for univariate series")
    axes = (1, 2) if shared_channels else (1,)
    mean = x.mean(axis=axes, keepdims=True)  # (N, 1, 1) or (N, 1, C)
    std = x.std(axis=axes, keepdims=True)
    # A flat window has std 0; dividing its zero deviations by 1 keeps it all zeros.
    scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return ((x - mean) / scale).astype(np.float32)
