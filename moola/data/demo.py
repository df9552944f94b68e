"""The embedded demo dataset: the user's exact layout, cut from one simulated NQ-like series.

One 1-minute price path near 20,000 with volatility clustering (an AR(1) log-volatility) and
fat-tailed returns, rounded to the 0.25 tick. Pattern events replace 45 bars of returns:

- `retracement`: an impulse leg (bars 30–54 of the window) then a pullback of 35–65% of it
  (bars 55–74);
- `consolidation`: a mean-reverting sideways range over bars 30–74.

Both use the local volatility, so the classes differ in shape, not in scale or bar volatility.
The unlabeled pool is cut every `POOL_STRIDE` bars from the part of the path before the val
period and holds the same patterns, unlabeled, at random offsets; no pool window overlaps a
val window. Labeled rows are in time order: train rows 0–77, val rows 78–97.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.parquet import write_windows
from moola.data.split import write_json_atomic

N_BARS = 105
SPAN = (30, 75)  # pattern bars [30, 75): the "shape of bars 30–74"
N_UNLABELED = 11_873
N_TRAIN, N_VAL = 78, 20
CLASS_COUNTS = {"train": (44, 34), "val": (12, 8)}  # (consolidation, retracement): 56 / 42 in all
POOL_STRIDE = 20  # bars between unlabeled window starts (overlapping windows, like a sliding cut)
EVENT_SPACING = 160  # mean bars between unlabeled pattern events in the pool
TICK = 0.25
START_PRICE = 20_000.0
IMPULSE_DRIFT = (0.25, 0.5)  # per-bar drift of the impulse leg, in σ: a 6–12 σ move over 25 bars
PATTERN_NOISE = 0.8  # noise inside a retracement, in σ
DISTRACTOR_PROB = 0.0  # chance a labeled window's first 30 bars hold a partial pattern of either class
BASE_VOL = 2.5e-4  # per-minute return std (~5 points at 20,000)
START_TIME = pd.Timestamp("2024-01-02 14:30:00")


def _volatility(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clustered per-bar volatility: log σ is AR(1) with persistence 0.995 (half-life ~140 bars)."""
    phi, stationary_std = 0.995, 0.35
    shocks = rng.normal(0.0, stationary_std * np.sqrt(1 - phi**2), n)
    # log_vol[t] = phi * log_vol[t-1] + shock[t], started from its stationary distribution.
    initial = rng.normal(0.0, stationary_std)
    log_vol, _ = lfilter([1.0], [1.0, -phi], shocks, zi=[phi * initial])
    return BASE_VOL * np.exp(log_vol)


def _pattern(rng: np.random.Generator, label: int, sigma: float, n: int = SPAN[1] - SPAN[0]) -> np.ndarray:
    """Log-returns of `n` pattern bars (45 for a full pattern); label 0 consolidation, 1 retracement."""
    noise = rng.standard_normal(n)
    if label == 0:
        theta = rng.uniform(0.15, 0.35)  # pull back to the range's centre per bar
        level = np.zeros(n + 1)
        for t in range(n):
            level[t + 1] = (1 - theta) * level[t] + 0.9 * sigma * noise[t]
        return np.diff(level)
    direction = rng.choice((-1.0, 1.0))
    n_impulse = round(n * 25 / 45)
    drift = direction * rng.uniform(*IMPULSE_DRIFT) * sigma  # per bar, in units of the local σ
    pullback = -drift * n_impulse * rng.uniform(0.35, 0.65) / (n - n_impulse)
    returns = PATTERN_NOISE * sigma * noise
    returns[:n_impulse] += drift
    returns[n_impulse:] += pullback
    return returns


def _bars(log_returns: np.ndarray, vol: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OHLC bars `(n, 4)` on the tick grid from per-bar log-returns."""
    close = START_PRICE * np.exp(np.cumsum(log_returns))
    close = np.round(close / TICK) * TICK
    open_ = np.concatenate([[START_PRICE], close[:-1]])
    wick = np.abs(rng.standard_normal((len(close), 2))) * vol[:, None] * close[:, None] * 0.6
    high = np.ceil((np.maximum(open_, close) + wick[:, 0]) / TICK) * TICK
    low = np.floor((np.minimum(open_, close) - wick[:, 1]) / TICK) * TICK
    return np.stack([open_, high, low, close], axis=1)


def generate(seed: int = 17, n_unlabeled: int = N_UNLABELED) -> dict:
    """Build the demo tables in memory: {"labeled", "unlabeled", "split", "truth" (where the events are)}."""
    rng = np.random.default_rng(seed)
    pool_bars = n_unlabeled * POOL_STRIDE + N_BARS
    val_gap = 2 * N_BARS  # val windows sit apart, after the pool
    n_total = pool_bars + N_BARS + N_VAL * val_gap
    vol = _volatility(rng, n_total)
    returns = vol * rng.standard_t(df=5, size=n_total) / np.sqrt(5 / 3)  # unit-variance t(5)

    train_starts = np.sort(rng.choice(np.arange(0, pool_bars - N_BARS, N_BARS + 7), N_TRAIN, replace=False))
    val_starts = pool_bars + N_BARS + np.arange(N_VAL) * val_gap
    labels_train = rng.permutation(np.repeat([0, 1], CLASS_COUNTS["train"]))
    labels_val = rng.permutation(np.repeat([0, 1], CLASS_COUNTS["val"]))
    taken = np.zeros(n_total, bool)
    events = list(zip(np.concatenate([train_starts, val_starts]), np.concatenate([labels_train, labels_val])))
    for start, _ in events:
        taken[start: start + N_BARS] = True
    # Unlabeled events at random spacing inside the pool, away from the labeled windows.
    position = int(rng.integers(0, EVENT_SPACING))
    while position + N_BARS < pool_bars:
        if not taken[position: position + N_BARS].any():
            events.append((position, int(rng.integers(0, 2))))
        position += int(rng.integers(EVENT_SPACING // 2, 3 * EVENT_SPACING // 2))
    for start, label in events:
        lo, hi = start + SPAN[0], start + SPAN[1]
        returns[lo:hi] = _pattern(rng, int(label), float(vol[lo:hi].mean()))
    # Labeled windows are not clean either: the bars before the span may hold a partial pattern
    # of either class, so a model must look at bars 30–74, not at any trend in the window.
    for start, _ in events[: N_TRAIN + N_VAL]:
        if rng.random() < DISTRACTOR_PROB:
            returns[start: start + SPAN[0]] = _pattern(rng, int(rng.integers(0, 2)),
                                                      float(vol[start: start + SPAN[0]].mean()), SPAN[0])
    bars = _bars(returns, vol, rng)  # (n_total, 4)
    times = START_TIME + pd.to_timedelta(np.arange(n_total), unit="min")

    def cut(starts: np.ndarray) -> np.ndarray:
        return bars[starts[:, None] + np.arange(N_BARS)[None, :]]  # (n, T, 4)

    label_names = np.array(["consolidation", "retracement"], dtype=object)
    starts = np.concatenate([train_starts, val_starts])
    labeled = {
        "window_id": [f"{i}_exp_1" for i in range(N_TRAIN + N_VAL)],
        "label": label_names[np.concatenate([labels_train, labels_val])].tolist(),
        "expansion_start": np.full(N_TRAIN + N_VAL, SPAN[0], np.int64),
        "expansion_end": np.full(N_TRAIN + N_VAL, SPAN[1] - 1, np.int64),
        "timestamp": times[starts].values,
        "features": cut(starts),
    }
    pool_starts = np.arange(n_unlabeled) * POOL_STRIDE
    unlabeled = {
        "window_id": [f"u{i}" for i in range(n_unlabeled)],
        "timestamp": times[pool_starts].values,
        "features": cut(pool_starts),
    }
    split = {"train_indices": list(range(N_TRAIN)), "val_indices": list(range(N_TRAIN, N_TRAIN + N_VAL))}
    # the generator's truth (the labeling simulation's oracle): every event's first bar and class
    truth = {"event_starts": np.array([start for start, _ in events], np.int64),
             "event_labels": np.array([label for _, label in events], np.int64), "pool_starts": pool_starts}
    return {"labeled": labeled, "unlabeled": unlabeled, "split": split, "truth": truth}


def generator_version() -> str:
    """Digest of this module's source: the cache key changes whenever the generator does."""
    return hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode()).hexdigest()[:12]


def write_demo(out_dir: Path, seed: int = 17, n_unlabeled: int = N_UNLABELED) -> Path:
    """Write the demo dataset in the user's layout under `out_dir`; returns `out_dir`."""
    out_dir = Path(out_dir)
    tables = generate(seed, n_unlabeled)
    write_windows(out_dir / LABELED, tables["labeled"])
    write_windows(out_dir / UNLABELED, tables["unlabeled"])
    write_json_atomic(out_dir / SPLIT, tables["split"])
    return out_dir
