"""Cross-fitting: a stage's own fit-and-predict run once per fold and seed, scored out of fold.

Every scored row gets its class probabilities from a model that never trained on it; a gate's
`val_f1` is macro F1 over all scored rows pooled, averaged over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from moola.evaluation.folds import Fold
from moola.training.metrics import balanced_accuracy_rows, macro_f1, macro_f1_rows

# fit_predict(fold, seed) -> class probabilities of fold.scored, (len(fold.scored), K)
FitPredict = Callable[[Fold, int], np.ndarray]


@dataclass
class Evaluation:
    """Out-of-fold predictions of one model recipe under one protocol."""

    name: str
    rows: np.ndarray  # (n,) scored rows (labeled-file positions), in the folds' order
    y: np.ndarray  # (n,) their labels
    fold_of: np.ndarray  # (n,) which fold scored each row
    seeds: tuple  # (S,)
    proba: np.ndarray  # (S, n, K) out-of-fold probabilities per seed
    extra: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return self.proba.shape[2]

    @property
    def pred(self) -> np.ndarray:
        """(S, n) predicted classes."""
        return self.proba.argmax(axis=2)

    @property
    def per_seed_f1(self) -> list:
        """Macro F1 over the pooled scored rows, one per seed."""
        return [macro_f1(self.y, pred, self.n_classes) for pred in self.pred]

    @property
    def val_f1(self) -> float:
        """The gate number: pooled out-of-fold macro F1, averaged over seeds."""
        return float(np.mean(self.per_seed_f1))

    @property
    def balanced_acc(self) -> float:
        """Pooled balanced accuracy averaged over seeds: 1/K in expectation for any predictor that
        ignores the window (however it guesses), so it has a fixed chance level macro F1 lacks."""
        return float(np.mean(balanced_accuracy_rows(np.broadcast_to(self.y, self.pred.shape), self.pred,
                                                    self.n_classes)))

    @property
    def per_fold_f1(self) -> list:
        """Macro F1 within each fold's block, averaged over seeds (small blocks: noisy, for reading only)."""
        return [float(np.mean([macro_f1(self.y[self.fold_of == f], pred[self.fold_of == f], self.n_classes)
                               for pred in self.pred])) for f in np.unique(self.fold_of)]


def cross_fit(name: str, fit_predict: FitPredict, folds: list[Fold], y: np.ndarray, seeds, n_classes: int) -> Evaluation:
    """Run `fit_predict` for every seed and fold; gather each fold's scored rows' probabilities."""
    rows = np.concatenate([fold.scored for fold in folds])
    if len(np.unique(rows)) != len(rows):
        raise ValueError("folds score some rows more than once: each row must be scored by exactly one fold")
    fold_of = np.concatenate([np.full(len(fold.scored), fold.index) for fold in folds])
    seeds = tuple(int(s) for s in seeds)
    proba = np.zeros((len(seeds), len(rows), n_classes))
    for s, seed in enumerate(seeds):
        begin = 0
        for fold in folds:
            overlap = np.intersect1d(fold.train, fold.scored)
            if len(overlap):
                raise ValueError(f"fold {fold.index} trains on rows it scores: {overlap[:5].tolist()}")
            part = np.asarray(fit_predict(fold, seed), dtype=np.float64)
            if part.shape != (len(fold.scored), n_classes):
                raise ValueError(f"fold {fold.index}: fit_predict returned {part.shape}, expected "
                                 f"({len(fold.scored)}, {n_classes})")
            proba[s, begin: begin + len(fold.scored)] = part
            begin += len(fold.scored)
    return Evaluation(name, rows, np.asarray(y)[rows], fold_of, seeds, proba)


def block_resample(n_rows: int, n_resamples: int, run_length: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_resamples, n_rows)` row positions: a circular moving-block bootstrap over rows in time
    order — each resample is built from runs of `run_length` consecutive rows, drawn with replacement.

    Neighbouring windows share bars and regime, so their errors come in runs; resampling single
    rows (or single rows within each fold's block) treats them as independent and makes the CI
    too narrow: with errors in runs of 10 over 100 rows, a row-wise 95% CI called two equally good
    models different 52% of the time, runs of 10 rows 21% (measured). Runs cross fold boundaries:
    the pooled F1 does not care which fold scored a row.
    """
    length = max(1, min(run_length, n_rows))
    n_runs = -(-n_rows // length)
    starts = rng.integers(0, n_rows, size=(n_resamples, n_runs, 1))
    return ((starts + np.arange(length)) % n_rows).reshape(n_resamples, -1)[:, :n_rows]


def default_run_length(n_rows: int) -> int:
    """The cube root of the rows (the usual rate for block bootstraps): 5 rows for 98."""
    return max(1, round(n_rows ** (1 / 3)))


def window_run_length(n_scored: int, rows_per_window: float, holdout: bool) -> int:
    """Runs of rows that resample whole windows: the user's file labels several spans of one window
    in neighbouring rows, and those rows are one draw of the market, not several.

    `rows_per_window` R: labeled rows over distinct windows (`Dataset.n_windows`). The folds
    resample runs of cube-root(n_scored / R) windows (R times as many rows), the split file's val
    rows runs of one window (R rows). With one row per window this is `default_run_length(n_scored)`
    (5 for 98 rows) and 1, as before; 98 rows from 66 windows: 6 and 1.
    """
    rows_per_window = max(1.0, float(rows_per_window or 1.0))
    if holdout:
        return max(1, round(rows_per_window))
    return max(1, round((n_scored / rows_per_window) ** (1 / 3) * rows_per_window))


def shift_offsets(n_rows: int, min_shift: int | None = None) -> np.ndarray:
    """Rotations of the circular-shift null: every offset at least `min_shift` rows (default a
    tenth of the rows, at least 1) from zero either way."""
    min_shift = max(1, int(0.1 * n_rows + 0.5)) if min_shift is None else min_shift
    return np.arange(min_shift, n_rows - min_shift + 1)


def circular_shift_p_value(a: Evaluation, min_shift: int | None = None) -> float:
    """One-sided p-value of the pooled balanced accuracy against predictions that ignore the window.

    The null keeps both series' own runs: every prediction sequence is rotated against the labels
    (time order) by each offset at least `min_shift` rows from zero (default 10% of the rows), and
    the observed score is ranked among the rotated ones. Labels that come in regimes and a
    predictor that repeats itself beat a bootstrap CI far more often than its level (runs of 20
    rows: ~18% instead of 2.5%, simulated); the rotations carry that dependence into the null.
    """
    shifts = shift_offsets(len(a.rows), min_shift)
    if len(shifts) == 0:
        return 1.0
    rotated = np.stack([np.roll(a.pred, shift, axis=1) for shift in shifts], axis=1)  # (S, n_shifts, n)
    y = np.broadcast_to(a.y, rotated.shape[1:])
    null = np.mean([balanced_accuracy_rows(y, r, a.n_classes) for r in rotated], axis=0)  # (n_shifts,)
    return float((1 + np.sum(null >= a.balanced_acc - 1e-12)) / (1 + len(shifts)))


def chance_bootstrap(a: Evaluation, n_resamples: int = 1000, seed: int = 17, run_length: int | None = None) -> dict:
    """Balanced accuracy minus chance (1/K), with a 95% CI from `block_resample` over the scored
    rows, and `circular_shift_p_value` beside it.

    The test against "learned nothing": a predictor independent of the window scores 1/K in
    expectation whatever its guessing rate, while its macro F1 beats a constant predictor's
    (measured: +0.19 with shuffled labels, CI [+0.08, +0.29])."""
    run_length = default_run_length(len(a.rows)) if run_length is None else run_length
    index = block_resample(len(a.rows), n_resamples, run_length, np.random.default_rng(seed))  # (B, n)
    chance = 1.0 / a.n_classes
    scores = np.mean([balanced_accuracy_rows(a.y[index], pred[index], a.n_classes) for pred in a.pred], axis=0)
    low, high = np.percentile(scores - chance, [2.5, 97.5])
    return {"balanced_acc": a.balanced_acc, "chance": chance, "delta": a.balanced_acc - chance,
            "delta_ci95": [float(low), float(high)], "ci_half_width": float((high - low) / 2),
            "run_length": run_length, "shift_p_value": circular_shift_p_value(a),
            # the smallest p the rotations can give: 1 / (1 + rotations); at 20 rows 1/18
            "shift_p_floor": 1.0 / (1 + len(shift_offsets(len(a.rows))))}


def paired_block_bootstrap(a: Evaluation, b: Evaluation, n_resamples: int = 1000, seed: int = 17,
                           run_length: int | None = None) -> dict:
    """F1(a) - F1(b) over the same scored rows and seeds, with a 95% CI from `block_resample`
    over the rows in the folds' (time) order; a and b see the same resampled rows. Each
    resample's F1 is the seed-averaged pooled macro F1, as the gate number is. `run_length`:
    default the cube root of the rows (the usual rate for block bootstraps; 5 rows for 98).
    At a small effective sample (few independent runs) a percentile CI still undercovers.
    """
    if not np.array_equal(a.rows, b.rows):
        raise ValueError(f"{a.name} and {b.name} were scored on different rows: they cannot be paired")
    if a.seeds != b.seeds:
        raise ValueError(f"{a.name} ran seeds {a.seeds}, {b.name} {b.seeds}: pair the same seeds")
    if run_length is None:
        run_length = default_run_length(len(a.rows))
    index = block_resample(len(a.rows), n_resamples, run_length, np.random.default_rng(seed))  # (B, n)
    y = a.y[index]
    deltas = np.mean([macro_f1_rows(y, pa[index], a.n_classes) - macro_f1_rows(y, pb[index], a.n_classes)
                      for pa, pb in zip(a.pred, b.pred)], axis=0)  # (B,) averaged over seeds
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": a.val_f1 - b.val_f1, "delta_ci95": [float(low), float(high)],
            "ci_half_width": float((high - low) / 2), "run_length": run_length}
