"""The pretraining pool never holds a scored window: an encoder pretrained on the very windows a
gate scores has seen them (bars, not labels), and a shared history leaks regime into the score."""

from __future__ import annotations

import numpy as np

from moola.data.overlap import same_window, sharing_mask


def pool_filter(pool: np.ndarray, scored: np.ndarray, *, pool_times: np.ndarray | None = None,
                scored_times: np.ndarray | None = None, span=None, pool_raw: np.ndarray | None = None,
                scored_raw: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Which pool windows may pretrain: `(keep mask (n_pool,), counts)`.

    Dropped: windows identical to a scored window (pass normalised model inputs, so a scaled copy
    counts) and, when both tables have start times and `span` (a window's duration) is known,
    windows whose start lies within `span` of a scored window's start (they share bars); and,
    given the raw prices (`pool_raw`, `scored_raw`), windows sharing a run of bars with a scored
    window at any offset (`moola.data.overlap`: a pool cut by a sliding window over the labeled
    rows' history, found without timestamps).
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
    sharing = np.zeros(len(pool), bool)
    if pool_raw is not None and scored_raw is not None and len(scored):
        sharing = sharing_mask(pool_raw, scored_raw)
    keep = ~(identical | overlapping | sharing)
    return keep, {"identical_to_scored": int(identical.sum()), "overlapping_scored": int((overlapping & ~identical).sum()),
                  "sharing_bars_with_scored": int((sharing & ~identical & ~overlapping).sum()),
                  "kept": int(keep.sum()), "pool": len(pool)}
