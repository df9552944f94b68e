"""Intervals and p-values that hold for K comparisons at once: the configurations tried on the same rows.

At 98 rows a gate's 95% CI spans about ±7 pp, so with ten configurations of a model that learned
nothing, one of them clears its own CI by luck far more often than 5% of the time (Cawley & Talbot
2010; docs/iterate.md measures it). The fix used here is the max-statistic (min-p) bootstrap: the
K statistics are resampled together — the same block-bootstrap rows for every configuration, so
their dependence (configurations that predict alike) is kept — and each interval is widened to the
percentile level at which, in all but 2.5% of the resamples, no draw of the K falls below its
lower bound (and, separately, above its upper bound).

- With K = 1 the levels are 2.5% / 97.5%: the per-run percentile CI exactly.
- K copies of one statistic widen nothing (they leave their intervals together).
- K independent statistics approach a Šidák correction (each tail at about 2.5%/K).

The circular-shift test gets the same treatment: every rotation is applied to all K prediction
sequences at once, and each observed score is ranked among the rotations' maxima over K. So does a
paired comparison's swap test (`swap_max_p_values`), which an adjusted verdict also needs: the
bootstrap's far tails are too narrow at 98 rows, and the randomization test's level does not
depend on them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from moola.evaluation.crossfit import Evaluation, shift_offsets
from moola.training.metrics import balanced_accuracy_rows, macro_f1_rows


def simultaneous_intervals(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, tuple]:
    """`draws` (K, B): K statistics over the same B resamples. Returns `(intervals (K, 2), tails)`:
    each statistic's [lower tail, 1 − upper tail] percentile interval, each tail chosen so that in
    all but (1 − `level`) / 2 of the resamples no statistic falls below (above) its own interval.

    Each side is calibrated on its own because every verdict reads one side (a gate: the lower
    bound above 0; select's "not shown worse": the upper bound reaching 0): the chance that any of
    the K lower bounds lies above its statistic's true value is (1 − level) / 2, as for one per-run CI."""
    draws = np.atleast_2d(np.asarray(draws, dtype=np.float64))
    n = draws.shape[1]
    alpha = (1.0 - level) / 2
    if len(draws) == 1:  # one comparison: the per-run CI, exactly
        return np.percentile(draws, [100 * alpha, 100 * (1 - alpha)], axis=1).T, (alpha, alpha)
    ranks = (rankdata(draws, axis=1, method="average") - 0.5) / n  # each draw's place in its own statistic
    tails = []
    for extreme in (ranks.min(axis=0), (1.0 - ranks).min(axis=0)):  # (B,) the lowest (highest) statistic
        tail = float(np.quantile(extreme, alpha, method="lower"))
        tails.append(min(max(tail, 0.5 / n), alpha))  # never narrower than the per-run CI
    low = np.array([np.percentile(row, 100 * tails[0]) for row in draws])
    high = np.array([np.percentile(row, 100 * (1 - tails[1])) for row in draws])
    return np.stack([low, high], axis=1), tuple(tails)


def f1_draws(ev: Evaluation, index: np.ndarray) -> np.ndarray:
    """(B,) the seed-averaged pooled macro F1 on each resample of rows `index` (B, n)."""
    return np.mean([macro_f1_rows(ev.y[index], pred[index], ev.n_classes) for pred in ev.pred], axis=0)


def chance_draws(ev: Evaluation, index: np.ndarray) -> np.ndarray:
    """(B,) seed-averaged balanced accuracy minus chance (1/K classes) on each resample."""
    scores = np.mean([balanced_accuracy_rows(ev.y[index], pred[index], ev.n_classes) for pred in ev.pred], axis=0)
    return scores - 1.0 / ev.n_classes


def max_shift_p_values(evaluations: list, min_shift: int | None = None) -> list:
    """One-sided circular-shift p-values of each model's balanced accuracy, adjusted for all of
    them (`crossfit.circular_shift_p_value` with the null's maximum over the models at each
    rotation). Every evaluation must be scored on the same rows in the same order."""
    first = evaluations[0]
    shifts = shift_offsets(len(first.rows), min_shift)
    if len(shifts) == 0:
        return [1.0] * len(evaluations)
    null = np.full(len(shifts), -np.inf)
    for ev in evaluations:
        if not np.array_equal(ev.rows, first.rows):
            raise ValueError(f"{ev.name} was scored on other rows than {first.name}: rotate models on the same rows")
        rotated = np.stack([np.roll(ev.pred, shift, axis=1) for shift in shifts], axis=1)  # (S, n_shifts, n)
        y = np.broadcast_to(ev.y, rotated.shape[1:])
        null = np.maximum(null, np.mean([balanced_accuracy_rows(y, r, ev.n_classes) for r in rotated], axis=0))
    return [float((1 + np.sum(null >= ev.balanced_acc - 1e-12)) / (1 + len(shifts))) for ev in evaluations]


def swap_max_p_values(pairs: list, run_length: int, resamples: int = 1000, seed: int = 17) -> list:
    """One-sided p-values of macro F1(a) − F1(b) for each `(a, b)` pair, adjusted over all pairs.

    Under the null that a and b are exchangeable on every row (neither model is better), swapping
    their predictions in runs of `run_length` rows changes nothing in distribution. One swap pattern
    per resample is applied to every pair at once (their dependence kept), and each observed
    difference is ranked among the resamples' maxima over the pairs (Westfall & Young's max-T). The
    bootstrap's percentile bounds undercover in the far tails a large family reaches; this test's
    level holds under its null whatever K (docs/iterate.md measures both). Every pair must be scored
    on the same rows in the same order, a and b of a pair with the same seeds."""
    first = pairs[0][0]
    n = len(first.rows)
    blocks = np.arange(n) // max(1, int(run_length))
    swap = (np.random.default_rng(seed).random((resamples, int(blocks[-1]) + 1)) < 0.5)[:, blocks]  # (B, n)
    null = np.full(resamples, -np.inf)
    observed = []
    for a, b in pairs:
        if not np.array_equal(a.rows, first.rows) or not np.array_equal(b.rows, first.rows):
            raise ValueError(f"{a.name} and {b.name} were scored on other rows than {first.name}: swap on the same rows")
        y = np.broadcast_to(a.y, swap.shape)
        stat = np.mean([macro_f1_rows(y, np.where(swap, pb, pa), a.n_classes)
                        - macro_f1_rows(y, np.where(swap, pa, pb), a.n_classes) for pa, pb in zip(a.pred, b.pred)],
                       axis=0)
        null = np.maximum(null, stat)
        observed.append(a.val_f1 - b.val_f1)
    return [float((1 + np.sum(null >= value - 1e-12)) / (1 + resamples)) for value in observed]
