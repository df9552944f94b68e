"""Gate-5 and gate-7 building blocks, and the metrics every gate records."""

import numpy as np
import pytest

from moola.config import AugmentConfig
from moola.data.normalize import normalize_windows
from moola.training.calibration import cross_fit_calibrate, expected_calibration_error
from moola.training.metrics import majority_baseline, paired_bootstrap_delta
from moola.training.pseudo import make_pseudo_samples, synthetic_cap
from unit_tests.conftest import ohlc_windows


@pytest.mark.parametrize("n_train, expected", [(10, 20), (78, 156), (200, 210)])
def test_synthetic_cap_is_two_per_row_and_at_most_210(n_train, expected):
    assert synthetic_cap(n_train, AugmentConfig()) == expected


def test_pseudo_samples_come_from_train_rows_inherit_labels_and_respect_the_cap():
    rng = np.random.default_rng(0)
    train = normalize_windows(ohlc_windows(rng, 12, 30))
    val = normalize_windows(ohlc_windows(rng, 4, 30))
    y = np.array([0, 1] * 6)
    samples = make_pseudo_samples(train, y, val, lambda w: np.ones((len(w), 2)), AugmentConfig(), True, 17)
    assert 0 < len(samples.y) <= synthetic_cap(12, AugmentConfig())
    for row, label in zip(samples.provenance, samples.y):
        assert all(0 <= r < 12 for r in row["source_rows"])
        assert all(y[r] == label for r in row["source_rows"])
        assert row["quality"] >= 0.85
    assert (samples.windows[..., 1] >= samples.windows[..., [0, 3]].max(-1) - 1e-5).all()


def test_low_label_confidence_filters_every_candidate():
    rng = np.random.default_rng(0)
    train = normalize_windows(ohlc_windows(rng, 6, 30))
    wrong = lambda w: np.tile([0.0, 0.0], (len(w), 1))
    samples = make_pseudo_samples(train, np.array([0, 1] * 3), train[:0], wrong, AugmentConfig(), True, 17)
    assert samples.counts["quality"] == 0 and len(samples.y) == 0


def test_cross_fitted_calibration_never_scores_a_row_with_maps_fitted_on_it():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 10)
    proba = np.clip(np.eye(2)[y] * 0.6 + rng.uniform(0, 0.4, (20, 2)), 0, 1)
    proba /= proba.sum(1, keepdims=True)
    calibrated, folds = cross_fit_calibrate(proba, y, 5, 17)
    assert len(set(folds.tolist())) == 5
    # Refit on everything but fold 0 by hand: fold 0's scores must equal that fit, not a fit on all rows.
    from moola.training.calibration import fit_then_score
    rows = folds == 0
    np.testing.assert_allclose(calibrated[rows], fit_then_score(proba[~rows], y[~rows], proba[rows]))


def test_ece_counts_empty_bins_as_zero_weight():
    # Two rows: confidence 0.95 correct, 0.65 wrong. Bins 9 and 6 hold one row each; 8 bins empty.
    proba = np.array([[0.95, 0.05], [0.35, 0.65]])
    y = np.array([0, 0])
    assert expected_calibration_error(proba, y) == pytest.approx(0.5 * 0.05 + 0.5 * 0.65)


def test_majority_baseline_cannot_pass_as_learning():
    train_y, val_y = np.array([0] * 7 + [1] * 3), np.array([0] * 14 + [1] * 6)
    assert majority_baseline(train_y, val_y, 2)["majority_f1"] == pytest.approx(0.4118, abs=1e-3)


def test_paired_bootstrap_ci_brackets_the_point_delta():
    y = np.array([0, 1] * 10)
    better, worse = y.copy(), y.copy()
    worse[:6] = 1 - worse[:6]
    result = paired_bootstrap_delta(y, better, worse, 2, 500, 17)
    low, high = result["delta_ci95"]
    assert low <= result["delta"] <= high and low > 0


def test_vectorised_macro_f1_equals_sklearn_row_by_row():
    from moola.training.metrics import macro_f1, macro_f1_rows

    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 3, (50, 12)), rng.integers(0, 3, (50, 12))
    y_pred[0] = 0  # a row predicting one class only
    expected = [macro_f1(t, p, 3) for t, p in zip(y_true, y_pred)]
    np.testing.assert_allclose(macro_f1_rows(y_true, y_pred, 3), expected)
