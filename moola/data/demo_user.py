"""The demo laid out like the user's own files (`USER_DATA.md`), not like the seed's tidy version.

One simulated NQ-like 1-minute path (`demo._volatility`, `demo._bars`) over the whole history;
then, as the user's tools cut it:

- the unlabeled pool is a sliding cut every `STRIDE` bars over the **whole** history, ids
  `window_{start}`, so it holds every labeled window verbatim and its overlapping neighbours;
- a labeled row is one labeled *span* (`expansion_start`–`expansion_end`, inside the prediction
  bars 30–74, 5–23 bars) of one pool window, id `{base}_exp_{n}` (`base` = start / `STRIDE`);
  several rows share a window: most windows carry one span, some two spans of their own class
  each, a few are labeled twice on the same span (one of those pairs with conflicting labels);
- no timestamp column: rows are in time order (by `base`), and the split file is temporal by
  row order (the last `VAL_FRACTION` of the rows), cut between two windows that share bars.

The truth lives in the span: a retracement is an impulse then a partial pullback *inside the
span*, a consolidation a mean-reverting range inside it; the rest of the window is the market.
A model that never learns where the span is sees one input with two answers in every two-span
window whose spans differ in class.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import numpy as np

from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.demo import N_BARS, N_UNLABELED, _bars, _volatility, generator_version
from moola.data.parquet import write_windows
from moola.data.split import write_json_atomic
from moola.data.ucr import META

LAYOUT = "user-layout"
STRIDE = 10  # bars between pool window starts (the user's sliding cut: stride 10)
PREDICTION_BARS = (30, 74)  # inclusive: where every labeled span lies (past context 0–29, outcome 75–104)
SPAN_BARS = (5, 23)  # inclusive span lengths, as in the user's file (mean there 6.6; here ~9)
N_SINGLE, N_DOUBLE, N_TWICE = 34, 26, 6  # windows with one span, two spans, one span labeled twice
N_NEIGHBOURS = 4  # windows cut 50 bars after the previous labeled one (the two share 55 bars)
NEIGHBOUR_SHIFT = 5  # in pool windows (5 × 10 = 50 bars)
P_CONSOLIDATION = 0.57  # the user's 56 / 42
VAL_FRACTION = 0.2
EVENT_SPACING = 120  # mean bars between unlabeled pattern events in the pool
IMPULSE_DRIFT = (1.0, 1.6)  # per-bar drift of a retracement's impulse, in σ: a 3-8 σ leg over 3-12 bars
CLASSES = ("consolidation", "retracement")


def span_pattern(rng: np.random.Generator, label: int, sigma: float, n: int) -> np.ndarray:
    """Log-returns of an `n`-bar span: 0 a mean-reverting range, 1 an impulse then a 40–70% pullback."""
    noise = rng.standard_normal(n)
    if label == 0:
        theta = rng.uniform(0.5, 0.8)  # pull back to the range's centre per bar: a tight range
        level = np.zeros(n + 1)
        for t in range(n):
            level[t + 1] = (1 - theta) * level[t] + 0.9 * sigma * noise[t]
        return np.diff(level)
    n_impulse = max(2, round(n * 0.55))
    drift = rng.choice((-1.0, 1.0)) * rng.uniform(*IMPULSE_DRIFT) * sigma
    pullback = -drift * n_impulse * rng.uniform(0.4, 0.7) / (n - n_impulse)
    returns = 0.6 * sigma * noise
    returns[:n_impulse] += drift
    returns[n_impulse:] += pullback
    return returns


def _span(rng: np.random.Generator, first: int, last: int) -> tuple[int, int]:
    """An inclusive span inside bars `first`..`last`: 5 + Poisson(4) bars, at most 23."""
    length = int(min(SPAN_BARS[1], SPAN_BARS[0] + rng.poisson(4), last - first + 1))
    start = int(rng.integers(first, last - length + 2))
    return start, start + length - 1


def _window_plan(rng: np.random.Generator) -> list[list[tuple[int, int, int]]]:
    """Per window, its labeled rows as `(start, end, label)`; the conflicting pair's second label flipped."""
    kinds = rng.permutation(["single"] * N_SINGLE + ["double"] * N_DOUBLE + ["twice"] * N_TWICE)
    conflict = int(np.flatnonzero(kinds == "twice")[0])
    first, last = PREDICTION_BARS
    plans = []
    for w, kind in enumerate(kinds):
        label = lambda: int(rng.random() >= P_CONSOLIDATION)
        if kind == "double":  # two spans apart: one in each half of the prediction bars
            a, b = _span(rng, first, 51), _span(rng, 53, last)
            plans.append([(*a, label()), (*b, label())])
        else:
            span, y = _span(rng, first, last), label()
            rows = [(*span, y)]
            if kind == "twice":  # labeled again on the same bars: agreeing, or (once) not
                rows.append((*span, 1 - y if w == conflict else y))
            plans.append(rows)
    return plans


def generate(seed: int = 17, n_unlabeled: int = N_UNLABELED) -> dict:
    """The user-layout tables in memory: {"labeled": {...}, "unlabeled": {...}, "split": {...}}."""
    rng = np.random.default_rng(seed)
    n_windows = N_SINGLE + N_DOUBLE + N_TWICE
    n_total = (n_unlabeled - 1) * STRIDE + N_BARS
    vol = _volatility(rng, n_total)
    returns = vol * rng.standard_t(df=5, size=n_total) / np.sqrt(5 / 3)  # unit-variance t(5)

    # Labeled windows: pool windows spread over the history, in time order; a few cut right after
    # the previous one (neighbours sharing bars), one of them the first window of the split's val rows.
    plans = _window_plan(rng)
    first_row = np.concatenate([[0], np.cumsum([len(p) for p in plans])])  # (n_windows + 1,)
    n_rows = int(first_row[-1])
    boundary = int(np.searchsorted(first_row, round(n_rows * (1 - VAL_FRACTION))))  # first val window
    others = np.setdiff1d(np.arange(1, n_windows), [boundary])
    followers = {boundary, *rng.choice(others, N_NEIGHBOURS - 1, replace=False).tolist()}
    n_independent = n_windows - len(followers)
    gap = (n_unlabeled - 1 - N_NEIGHBOURS * NEIGHBOUR_SHIFT) // n_independent  # pool windows per slot
    slack = gap - 2 * N_BARS // STRIDE  # independent windows never share bars, followers included
    if slack < 1:
        raise ValueError(f"n_unlabeled: expected at least {n_independent * (2 * N_BARS // STRIDE + 1) + 21} pool "
                         f"windows to hold {n_windows} labeled windows apart, found {n_unlabeled}")
    independent = iter(np.arange(n_independent) * gap + rng.integers(0, slack, n_independent))
    bases = []
    for w in range(n_windows):
        bases.append(bases[-1] + NEIGHBOUR_SHIFT if w in followers else int(next(independent)))
    taken = np.zeros(n_total, bool)
    for base in bases:
        taken[base * STRIDE: base * STRIDE + N_BARS] = True
    # Unlabeled events at random spacing, away from the labeled windows.
    position = int(rng.integers(0, EVENT_SPACING))
    while position + N_BARS < n_total:
        if not taken[position: position + N_BARS].any():
            start, end = _span(rng, *PREDICTION_BARS)
            lo, hi = position + start, position + end + 1
            returns[lo:hi] = span_pattern(rng, int(rng.integers(0, 2)), float(vol[lo:hi].mean()), hi - lo)
        position += int(rng.integers(EVENT_SPACING // 2, 3 * EVENT_SPACING // 2))
    # Labeled spans: the pattern of the row's class in the span's bars (the conflicting pair's
    # bars hold the first row's class: the second row is the mislabel).
    rows = []
    for base, plan in zip(bases, plans):
        done = set()
        for n, (start, end, label) in enumerate(plan, 1):
            lo, hi = base * STRIDE + start, base * STRIDE + end + 1
            if (start, end) not in done:
                returns[lo:hi] = span_pattern(rng, label, float(vol[lo:hi].mean()), hi - lo)
                done.add((start, end))
            rows.append((f"{base}_exp_{n}", CLASSES[label], start, end, base * STRIDE))
    bars = _bars(returns, vol, rng)  # (n_total, 4)

    def cut(starts: np.ndarray) -> np.ndarray:
        return bars[starts[:, None] + np.arange(N_BARS)[None, :]]  # (n, T, 4)

    starts = np.array([r[4] for r in rows])
    labeled = {"window_id": [r[0] for r in rows], "label": [r[1] for r in rows],
               "expansion_start": np.array([r[2] for r in rows], np.int64),
               "expansion_end": np.array([r[3] for r in rows], np.int64), "features": cut(starts)}
    pool_starts = np.arange(n_unlabeled) * STRIDE
    unlabeled = {"window_id": [f"window_{s}" for s in pool_starts], "features": cut(pool_starts)}
    cut_row = int(first_row[boundary])  # train: every row before the first val window's
    split = {"train_indices": list(range(cut_row)), "val_indices": list(range(cut_row, n_rows))}
    return {"labeled": labeled, "unlabeled": unlabeled, "split": split}


def write_demo(out_dir: Path, seed: int = 17, n_unlabeled: int = N_UNLABELED) -> Path:
    """Write the user-layout demo under `out_dir` (no `timestamp` column anywhere); returns `out_dir`."""
    out_dir = Path(out_dir)
    tables = generate(seed, n_unlabeled)
    write_windows(out_dir / LABELED, tables["labeled"])
    write_windows(out_dir / UNLABELED, tables["unlabeled"])
    # The folder says where its spans lie, as a user's folder can (moola_dataset.json): gate 0 checks
    # the spans against it and the span-aligned view takes its length from it.
    write_json_atomic(out_dir / META, {"prediction_bars": list(PREDICTION_BARS)})
    write_json_atomic(out_dir / SPLIT, tables["split"])  # last: its presence means the folder is complete
    return out_dir


def version() -> str:
    """Digest of both generators' source (this one builds on `moola.data.demo`)."""
    own = hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode()).hexdigest()[:12]
    return hashlib.sha256((own + generator_version()).encode()).hexdigest()[:12]
