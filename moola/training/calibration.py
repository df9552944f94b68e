"""Gate 7: isotonic calibration that never scores a row it was fitted on, and probability averaging."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold


def _fit_isotonic(proba: np.ndarray, y: np.ndarray) -> list:
    """One-vs-rest isotonic maps, one per class; `(n, K)` probabilities, `(n,)` labels."""
    return [IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba[:, k], (y == k).astype(float))
            for k in range(proba.shape[1])]


def _apply(maps: list, proba: np.ndarray) -> np.ndarray:
    return _renormalised(np.stack([m.predict(proba[:, k]) for k, m in enumerate(maps)], axis=1))  # (n, K)


def _renormalised(calibrated: np.ndarray) -> np.ndarray:
    """One-vs-rest calibrated scores `(n, K)` as probabilities that sum to 1 per row."""
    total = calibrated.sum(axis=1, keepdims=True)
    # A row every map sends to 0 has no calibrated evidence: fall back to uniform.
    return np.where(total > 0, calibrated / np.where(total > 0, total, 1), 1.0 / calibrated.shape[1])


def fit_calibrator(proba: np.ndarray, y: np.ndarray) -> list:
    """One-vs-rest isotonic maps as plain arrays, one `(x, y)` pair of increasing knots per class:
    what a weights-only artifact can hold (no pickled estimator). `apply_calibrator` reproduces
    `IsotonicRegression(out_of_bounds="clip").predict` from them (linear between knots, flat beyond)."""
    return [(np.asarray(m.X_thresholds_, dtype=np.float64), np.asarray(m.y_thresholds_, dtype=np.float64))
            for m in _fit_isotonic(proba, y)]


def apply_calibrator(calibrator: list, proba: np.ndarray) -> np.ndarray:
    """`(n, K)` probabilities through `fit_calibrator`'s knots, renormalised per row."""
    if len(calibrator) != proba.shape[1]:
        raise ValueError(f"calibrator has maps for {len(calibrator)} classes, probabilities have {proba.shape[1]}")
    return _renormalised(np.stack([np.interp(proba[:, k], x, y) for k, (x, y) in enumerate(calibrator)], axis=1))


def reliability_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict:
    """A reliability diagram's numbers, on `expected_calibration_error`'s bins: per equal-width bin of
    the top-class probability, the mean confidence, the accuracy and the row count (None when empty)."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    return {"confidence": [float(confidence[bins == b].mean()) if count[b] else None for b in range(n_bins)],
            "accuracy": [float(correct[bins == b].mean()) if count[b] else None for b in range(n_bins)],
            "count": count.tolist()}


def cross_fit_calibrate(proba: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold isotonic calibration on the same rows: each row is scored by maps fitted without it.

    Returns calibrated probabilities `(n, K)` and the fold of each row `(n,)`.
    """
    n_splits = int(min(n_folds, np.bincount(y).min()))
    if n_splits < 2:
        raise ValueError(f"cross-fitted calibration needs at least 2 rows of every class in val, "
                         f"found class counts {np.bincount(y).tolist()}; add val rows or a test split")
    folds = np.empty(len(y), dtype=np.int64)
    calibrated = np.empty_like(proba, dtype=np.float64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fold, (fit_rows, score_rows) in enumerate(splitter.split(proba, y)):
        calibrated[score_rows] = _apply(_fit_isotonic(proba[fit_rows], y[fit_rows]), proba[score_rows])
        folds[score_rows] = fold
    return calibrated, folds


def calibrate_across_folds(proba: np.ndarray, labels_for, fold_of: np.ndarray, *, past_only: bool = False,
                           excluded_for=None, n_folds: int = 5, seed: int = 17) -> tuple[np.ndarray, list]:
    """Out-of-fold probabilities `(n, K)` calibrated fold by fold: fold f's rows are scored by maps
    fitted on the other folds' rows only (`past_only`: on earlier folds only, for walk-forward),
    minus `excluded_for(f)` `(n,)` bool (the rows fold f purged from its training), with
    `labels_for(f)` `(n,)` — the labels as fold f's fits saw them.

    A fold with no usable fitting rows (walk-forward's first scored fold, or fitting rows that
    lack a class) is cross-fitted within its own rows instead — later rows of that block then
    calibrate earlier ones; one too small for that stays uncalibrated. Returns the calibrated
    probabilities and a note per such fold.
    """
    calibrated = np.empty_like(proba, dtype=np.float64)
    notes = []
    for fold in np.unique(fold_of):
        rows, y = fold_of == fold, np.asarray(labels_for(fold))
        fit = (fold_of < fold) if past_only else ~rows
        if excluded_for is not None:
            fit &= ~np.asarray(excluded_for(fold), dtype=bool)
        if fit.any() and len(np.unique(y[fit])) == proba.shape[1]:
            calibrated[rows] = _apply(_fit_isotonic(proba[fit], y[fit]), proba[rows])
            continue
        try:
            calibrated[rows], _ = cross_fit_calibrate(proba[rows], y[rows], n_folds, seed)
            notes.append(f"fold {fold}: no earlier/other rows of every class; cross-fitted within its own rows")
        except ValueError as exc:
            calibrated[rows] = proba[rows]
            notes.append(f"fold {fold}: left uncalibrated ({exc})")
    return calibrated, notes


def fit_then_score(fit_proba: np.ndarray, fit_y: np.ndarray, score_proba: np.ndarray) -> np.ndarray:
    """Calibrate on one set of rows (val) and score another (test)."""
    return _apply(_fit_isotonic(fit_proba, fit_y), score_proba)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE over equal-width confidence bins; empty bins contribute nothing (weight 0)."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)  # confidence 1.0 falls in the last bin
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def brier_score(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of the squared distance to the one-hot label (0 is perfect, 2 the worst)."""
    onehot = np.eye(proba.shape[1])[y]
    return float(((proba - onehot) ** 2).sum(axis=1).mean())
