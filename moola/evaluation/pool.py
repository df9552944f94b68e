"""The pretraining pool never holds a scored window: an encoder pretrained on the very windows a
gate scores has seen them (bars, not labels), and a shared history leaks regime into the score."""

from __future__ import annotations

import numpy as np

from moola.evaluation.folds import same_window


def pool_filter(pool: np.ndarray, scored: np.ndarray, *, pool_times: np.ndarray | None = None,
                scored_times: np.ndarray | None = None, span=None) -> tuple[np.ndarray, dict]:
    """Which pool windows may pretrain: `(keep mask (n_pool,), counts)`.

    Dropped: windows identical to a scored window (pass normalised model inputs, so a scaled copy
    counts) and, when both tables have start times and `span` (a window's duration) is known,
    windows whose start lies within `span` of a scored window's start (they share bars).
    """
    identical = same_window(pool, scored).any(axis=1) if len(scored) else np.zeros(len(pool), bool)
    overlapping = np.zeros(len(pool), bool)
    if pool_times is not None and scored_times is not None and span is not None and len(scored):
        starts = np.sort(np.asarray(scored_times))
        times = np.asarray(pool_times)
        after = np.clip(np.searchsorted(starts, times), 0, len(starts) - 1)  # first scored start >= t
        before = np.clip(after - 1, 0, len(starts) - 1)
        nearest = np.minimum(np.abs(starts[after] - times), np.abs(times - starts[before]))
        overlapping = nearest < span
    keep = ~(identical | overlapping)
    return keep, {"identical_to_scored": int(identical.sum()), "overlapping_scored": int((overlapping & ~identical).sum()),
                  "kept": int(keep.sum()), "pool": len(pool)}
