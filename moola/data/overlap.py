"""Two windows that are the same model input, or that share bars: found from the values alone.

`same_window` compares normalised windows (a scaled copy is the same input). `shared_bars`:
windows cut from one history at different offsets share bars, found from the prices alone.

A pool cut by a sliding window over the same bars as the labeled rows is the likely real case,
and the user's files have no timestamps. Two windows *share bars* when, at some offset s, every
bar of their overlap is equal (exact float32 values, all channels) and the overlap holds at
least `min_shared` bars. Candidates come from hashes of runs of `min_shared` consecutive bars;
each candidate is then verified on the raw values, so a hash collision never links two windows.

Runs in which every bar is the same (a flat market, zero padding) are no evidence: prices that
repeat one bar say nothing about a shared history, and they would link every padded window to
every other. Neither are runs found in more than `max_repeats` labeled positions.
"""

from __future__ import annotations

import numpy as np

SAME_WINDOW_ATOL = 1e-3  # in normalised units: float32 prices near 20,000 ×1.0001 differ by ~1e-4 after it


def same_window(windows: np.ndarray, others: np.ndarray, atol: float = SAME_WINDOW_ATOL) -> np.ndarray:
    """`(n, m)` bool: window i equals other j to `atol` in every bar and channel.

    Pass model inputs (per-window normalised), so a window and its copy ×1.0001 count as one;
    a tolerance rather than a digest of rounded values, which a float32 copy can straddle.
    """
    a = np.asarray(windows, dtype=np.float32).reshape(len(windows), -1)
    b = np.asarray(others, dtype=np.float32).reshape(len(others), -1)
    close = np.zeros((len(a), len(b)), bool)
    for j in range(len(b)):  # one column at a time: (n, T*C) temporaries, never (n, m, T*C)
        close[:, j] = np.abs(a - b[j]).max(axis=1) <= atol
    return close


MIN_SHARED_BARS = 10  # a run this long of equal OHLC bars does not happen by chance at float precision


def min_shared_bars(n_bars: int) -> int:
    """The shortest overlap that counts: 10 bars, or half the window for short windows (at least 2)."""
    return max(2, min(MIN_SHARED_BARS, n_bars // 2))


def _run_hashes(windows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(N, T - k + 1)` uint64 hash of each run of k bars, and a mask of runs that are informative."""
    x = np.ascontiguousarray(windows, dtype=np.float32)  # (N, T, C)
    bits = x.view(np.uint32).astype(np.uint64)  # (N, T, C) exact bit patterns
    primes = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
                      dtype=np.uint64)
    weights = primes[np.arange(x.shape[2]) % len(primes)] + np.arange(x.shape[2], dtype=np.uint64)
    with np.errstate(over="ignore"):
        bar = (bits * weights).sum(axis=2, dtype=np.uint64)  # (N, T) one hash per bar, wrapping
        bar ^= bar >> np.uint64(29)
        n_runs = x.shape[1] - k + 1
        runs = np.zeros((len(x), n_runs), np.uint64)
        for j in range(k):  # polynomial hash of k consecutive bars
            runs = runs * np.uint64(0x100000001B3) + bar[:, j: j + n_runs]
    # A run whose bars are all equal (flat prices, padding) proves nothing.
    changes = np.concatenate([np.zeros((len(x), 1), np.int64),
                              np.cumsum(np.any(x[:, 1:] != x[:, :-1], axis=2), axis=1)], axis=1)  # (N, T)
    informative = (changes[:, k - 1:] - changes[:, : n_runs]) > 0
    return runs, informative


def shared_bars(windows: np.ndarray, others: np.ndarray, min_shared: int | None = None,
                max_repeats: int | None = None) -> np.ndarray:
    """`(m, 3)` int64 rows `(i, j, offset)`: window i and other j share bars.

    `offset` s means `windows[i][t + s] == others[j][t]` on the whole overlap (`T - |s|` bars,
    at least `min_shared`); s = 0 is an exact copy. Pass raw values (prices), not normalised
    ones: windows at different offsets have different per-window statistics.
    """
    a = np.asarray(windows, dtype=np.float32)
    b = np.asarray(others, dtype=np.float32)
    empty = np.zeros((0, 3), np.int64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:] or not len(a) or not len(b):
        return empty
    n_bars = a.shape[1]
    k = min_shared or min_shared_bars(n_bars)
    if k > n_bars:
        return empty
    max_repeats = max_repeats or 4 * n_bars
    hash_a, ok_a = _run_hashes(a, k)
    hash_b, ok_b = _run_hashes(b, k)
    keys_b = hash_b[ok_b]  # (r,) informative runs of the others, with their positions
    rows_b, pos_b = np.nonzero(ok_b)
    order = np.argsort(keys_b, kind="stable")
    keys_b, rows_b, pos_b = keys_b[order], rows_b[order], pos_b[order]
    unique, first, counts = np.unique(keys_b, return_index=True, return_counts=True)
    common = unique[counts > max_repeats]  # runs repeated all over the others: no evidence
    candidates = []
    for start in range(0, len(a), 4096):  # bounded memory on a large pool
        chunk = hash_a[start: start + 4096]
        hit = np.isin(chunk, unique) & ok_a[start: start + 4096] & ~np.isin(chunk, common)
        rows_a, pos_a = np.nonzero(hit)
        if not len(rows_a):
            continue
        slot = np.searchsorted(unique, chunk[rows_a, pos_a])  # (h,) which run of the others
        reps = counts[slot]
        lo = first[slot]
        expand = np.repeat(np.arange(len(rows_a)), reps)  # every (run in a, equal run in b) pair
        within = np.arange(len(expand)) - np.repeat(np.cumsum(reps) - reps, reps)
        matched = lo[expand] + within
        triples = np.stack([rows_a[expand] + start, rows_b[matched], pos_a[expand] - pos_b[matched]], axis=1)
        candidates.append(np.unique(triples, axis=0))
    if not candidates:
        return empty
    triples = np.unique(np.concatenate(candidates), axis=0)
    keep = np.zeros(len(triples), bool)
    for offset in np.unique(triples[:, 2]):  # verify each candidate on the raw values of its overlap
        which = np.flatnonzero(triples[:, 2] == offset)
        i, j, s = triples[which, 0], triples[which, 1], int(offset)
        if s >= 0:
            left, right = a[i, s:], b[j, : n_bars - s]
        else:
            left, right = a[i, : n_bars + s], b[j, -s:]
        keep[which] = np.all(left == right, axis=(1, 2))
    return triples[keep]


def sharing_mask(windows: np.ndarray, others: np.ndarray, min_shared: int | None = None) -> np.ndarray:
    """`(n,)` bool: window i shares bars with at least one of `others`."""
    pairs = shared_bars(windows, others, min_shared)
    mask = np.zeros(len(windows), bool)
    mask[pairs[:, 0]] = True
    return mask


def sharing_matrix(windows: np.ndarray, min_shared: int | None = None) -> np.ndarray:
    """`(n, n)` bool: windows i and j (i != j) share bars."""
    pairs = shared_bars(windows, windows, min_shared)
    linked = np.zeros((len(windows), len(windows)), bool)
    linked[pairs[:, 0], pairs[:, 1]] = True
    linked[pairs[:, 1], pairs[:, 0]] = True
    np.fill_diagonal(linked, False)
    return linked
