"""Folds (purge, embargo, identical windows, walk-forward order), pooled out-of-fold scoring, block bootstrap."""

import numpy as np
import pytest

from moola.data.normalize import normalize_windows
from moola.evaluation.crossfit import cross_fit, paired_block_bootstrap
from moola.evaluation.folds import identical_groups, make_folds, time_order


@pytest.mark.parametrize("n_rows, k", [(98, 5), (20, 4), (11, 3)])
def test_blocked_folds_score_every_row_once_and_never_train_on_it_or_its_neighbours(n_rows, k):
    folds = make_folds(n_rows, "blocked", k, embargo=1)
    scored = np.concatenate([f.scored for f in folds])
    assert sorted(scored.tolist()) == list(range(n_rows))
    for fold in folds:
        first, last = fold.scored.min(), fold.scored.max()
        assert fold.scored.tolist() == list(range(first, last + 1))  # one contiguous block
        assert not set(fold.train) & set(fold.scored)
        assert not set(fold.train) & {first - 1, last + 1}  # the embargo
        assert set(fold.purged) == {first - 1, last + 1} & set(range(n_rows))
        assert len(fold.train) + len(fold.purged) + len(fold.scored) == n_rows


def test_walk_forward_trains_only_on_earlier_rows_and_never_scores_the_first_block():
    folds = make_folds(98, "walk-forward", 5, embargo=2)
    assert len(folds) == 4
    blocks = np.array_split(np.arange(98), 5)
    assert not set(blocks[0]) & set(np.concatenate([f.scored for f in folds]))
    for fold in folds:
        assert fold.train.max() < fold.scored.min() - 2  # before the block, minus the embargo
        assert sorted(fold.purged.tolist()) == [fold.scored.min() - 2, fold.scored.min() - 1]


def test_blocks_follow_timestamps_not_file_order():
    rng = np.random.default_rng(0)
    timestamps = np.datetime64("2024-01-01T00:00") + rng.permutation(30).astype("timedelta64[h]")
    order = time_order(30, timestamps)
    for fold in make_folds(30, "blocked", 3, embargo=0, timestamps=timestamps):
        ranks = np.sort(np.searchsorted(np.sort(timestamps), timestamps[fold.scored]))
        assert ranks.tolist() == list(range(ranks[0], ranks[0] + len(ranks)))  # contiguous in time
    assert np.all(np.diff(timestamps[order]) > np.timedelta64(0, "h"))


def test_windows_overlapping_a_scored_window_in_time_are_purged():
    timestamps = np.datetime64("2024-01-01T00:00") + (np.arange(20) * 30).astype("timedelta64[m]")
    span = np.timedelta64(105, "m")  # 105 one-minute bars: windows 30 minutes apart overlap 3 deep
    fold = make_folds(20, "blocked", 4, embargo=0, timestamps=timestamps, span=span)[1]  # scores rows 5-9
    assert fold.scored.tolist() == [5, 6, 7, 8, 9]
    assert fold.purged.tolist() == [2, 3, 4, 10, 11, 12]


def test_identical_windows_are_purged_even_as_a_scaled_copy():
    rng = np.random.default_rng(0)
    raw = 20_000 + rng.normal(size=(12, 9, 4)).cumsum(axis=1)
    raw[1] = raw[10] * 1.0001  # 102_exp_1 / 102_exp_2: the same prices, one rescaled
    groups = identical_groups(normalize_windows(raw))
    assert groups[1] == groups[10] and len(set(groups)) == 11
    fold = make_folds(12, "blocked", 3, embargo=0, groups=groups)[2]  # scores rows 8-11
    assert 1 in fold.purged and 1 not in fold.train


def test_bad_fold_settings_say_what_is_allowed():
    with pytest.raises(ValueError, match="2 <= K <= 10"):
        make_folds(10, "blocked", 11)
    with pytest.raises(ValueError, match="blocked or walk-forward"):
        make_folds(10, "kfold", 3)


def test_cross_fit_pools_out_of_fold_predictions_and_averages_seeds():
    y = np.array([0, 1] * 15)
    folds = make_folds(30, "blocked", 3, embargo=1)
    trained_on = []

    def fit_predict(fold, seed):
        train, scored = fold.train, fold.scored
        trained_on.append((set(train.tolist()), set(scored.tolist())))
        proba = np.zeros((len(scored), 2))
        right = (np.arange(len(scored)) + seed) % 3 != 0  # seed-dependent errors
        proba[np.arange(len(scored)), np.where(right, y[scored], 1 - y[scored])] = 1.0
        return proba

    evaluation = cross_fit("toy", fit_predict, folds, y, seeds=[17, 18], n_classes=2)
    assert all(not train & scored for train, scored in trained_on) and len(trained_on) == 6
    assert evaluation.proba.shape == (2, 30, 2) and sorted(evaluation.rows.tolist()) == list(range(30))
    assert evaluation.val_f1 == pytest.approx(np.mean(evaluation.per_seed_f1))
    assert len(evaluation.per_fold_f1) == 3


def test_cross_fit_rejects_a_fit_predict_of_the_wrong_shape():
    folds = make_folds(12, "blocked", 3, embargo=0)
    with pytest.raises(ValueError, match=r"returned \(4, 3\), expected \(4, 2\)"):
        cross_fit("bad", lambda fold, seed: np.zeros((len(fold.scored), 3)), folds, np.zeros(12, int), [0], 2)


def evaluation_of(name, correct_share, y, folds, seed=0):
    rng = np.random.default_rng(seed)

    def fit_predict(fold, _seed):
        right = rng.random(len(fold.scored)) < correct_share
        return np.eye(2)[np.where(right, y[fold.scored], 1 - y[fold.scored])]

    return cross_fit(name, fit_predict, folds, y, [0], 2)


def test_block_bootstrap_is_zero_for_identical_predictions_and_positive_for_a_clear_winner():
    y = np.array([0, 1] * 49)
    folds = make_folds(98, "blocked", 5, embargo=1)
    strong, weak = evaluation_of("strong", 0.95, y, folds, 1), evaluation_of("weak", 0.55, y, folds, 2)
    same = paired_block_bootstrap(strong, strong)
    assert same["delta"] == 0 and same["delta_ci95"] == [0.0, 0.0]
    better = paired_block_bootstrap(strong, weak)
    assert better["delta_ci95"][0] > 0 and better["delta_ci95"][0] <= better["delta"] <= better["delta_ci95"][1]
    assert better["ci_half_width"] > 0


def test_block_resamples_take_consecutive_runs_of_rows():
    from moola.evaluation.crossfit import block_resample

    index = block_resample(18, 50, 3, np.random.default_rng(0))
    assert index.shape == (50, 18) and index.min() >= 0 and index.max() < 18
    steps = (np.diff(index.reshape(50, 6, 3), axis=2) - 1) % 18  # each run walks forward, wrapping
    assert np.all(steps == 0)


def test_runs_of_rows_keep_the_ci_far_closer_to_its_level_when_errors_come_in_runs():
    # Two equally good models whose errors come in runs of 10 consecutive rows (neighbouring
    # windows share a regime). Resampling rows one by one calls them different about half the time.
    from moola.evaluation.crossfit import Evaluation

    y = np.array([0, 1] * 50)
    fold_of = np.repeat(np.arange(5), 20)
    rng = np.random.default_rng(3)

    def model():
        wrong = np.repeat(rng.random(10) < 0.3, 10)
        return np.eye(2)[np.where(wrong, 1 - y, y)][None]

    rejections = {1: 0, 10: 0}
    for trial in range(80):
        a = Evaluation("a", np.arange(100), y, fold_of, (0,), model())
        b = Evaluation("b", np.arange(100), y, fold_of, (0,), model())
        for run_length in rejections:
            low, high = paired_block_bootstrap(a, b, n_resamples=300, seed=trial, run_length=run_length)["delta_ci95"]
            rejections[run_length] += low > 0 or high < 0
    assert rejections[1] >= 30 and rejections[10] <= 0.6 * rejections[1], rejections


def test_windows_with_a_scored_windows_start_time_never_train_across_a_block_edge():
    timestamps = np.repeat(np.datetime64("2024-01-01T00:00") + np.arange(4).astype("timedelta64[h]"), 3)[:10]
    fold = make_folds(10, "blocked", 3, embargo=0, timestamps=timestamps)[0]  # scores rows 0-3
    assert fold.scored.tolist() == [0, 1, 2, 3]
    assert 4 in fold.purged and 5 in fold.purged and 5 not in fold.train  # row 3's timestamp, next block


def test_balanced_accuracy_against_chance_is_zero_for_a_guesser_and_positive_for_signal():
    from moola.evaluation.crossfit import chance_bootstrap

    y = np.array([0] * 60 + [1] * 38)
    folds = make_folds(98, "blocked", 5, embargo=1)
    rng = np.random.default_rng(3)
    guesser = cross_fit("guess", lambda fold, seed: np.eye(2)[(rng.random(len(fold.scored)) < 0.3).astype(int)],
                        folds, y, [0], 2)
    # A guesser beats the constant predictor's macro F1 but not chance in balanced accuracy.
    constant = cross_fit("const", lambda fold, seed: np.tile([1.0, 0.0], (len(fold.scored), 1)), folds, y, [0], 2)
    assert guesser.val_f1 > constant.val_f1
    noise = chance_bootstrap(guesser)
    assert noise["delta_ci95"][0] <= 0 <= noise["delta_ci95"][1]
    signal = chance_bootstrap(evaluation_of("strong", 0.9, y, folds, 1))
    assert signal["delta_ci95"][0] > 0 and signal["chance"] == 0.5


def test_pool_filter_drops_copies_and_time_overlaps_of_scored_windows():
    from moola.evaluation.pool import pool_filter

    rng = np.random.default_rng(0)
    scored = rng.normal(size=(3, 10, 4))
    pool = rng.normal(size=(6, 10, 4))
    pool[1] = scored[2]  # a copy...
    pool[4] = scored[0] + 0.0  # ...and another
    keep, counts = pool_filter(pool, scored)
    assert keep.tolist() == [True, False, True, True, False, True] and counts["identical_to_scored"] == 2
    minute = np.timedelta64(1, "m")
    start = np.datetime64("2024-01-01T00:00")
    scored_times = start + np.array([100, 500, 900]) * minute
    pool_times = start + np.array([0, 200, 491, 560, 700, 905]) * minute  # 491 and 905 within 10 bars
    keep, counts = pool_filter(pool, scored, pool_times=pool_times, scored_times=scored_times, span=10 * minute)
    assert keep.tolist() == [True, False, False, True, False, False]
    assert counts["overlapping_scored"] == 2 and counts["kept"] == 2


def test_calibration_across_folds_never_scores_a_row_with_maps_fitted_on_its_fold():
    from moola.training import calibration

    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 15)
    fold_of = np.repeat([0, 1, 2], 10)
    proba = rng.dirichlet([1, 1], size=30)
    seen = []
    original = calibration._fit_isotonic

    def spy(p, labels):
        seen.append({tuple(row) for row in p})
        return original(p, labels)

    calibration._fit_isotonic = spy
    try:
        calibrated, notes = calibration.calibrate_across_folds(proba, lambda fold: y, fold_of)
        seen_all = list(seen)
        seen.clear()
        past, past_notes = calibration.calibrate_across_folds(proba, lambda fold: y, fold_of, past_only=True)
    finally:
        calibration._fit_isotonic = original
    assert calibrated.shape == (30, 2) and np.allclose(calibrated.sum(1), 1) and not notes
    for fold, fitted in enumerate(seen_all):
        assert not fitted & {tuple(row) for row in proba[fold_of == fold]}  # never its own rows
        assert len(fitted) == 20
    # Walk-forward: fold 2's maps see folds 0-1 only; fold 0 has no past and is cross-fitted
    # within its own rows (StratifiedKFold: never a row with itself).
    assert {tuple(row) for row in proba[fold_of < 2]} == seen[-1]
    assert not seen[-1] & {tuple(row) for row in proba[fold_of == 2]}
    assert past_notes and "fold 0" in past_notes[0] and np.allclose(past.sum(1), 1)
    # Moving fold 0's probabilities moves the maps that score fold 1, never fold 0's own maps' inputs.
    moved = proba.copy()
    moved[fold_of == 0] = rng.dirichlet([1, 1], size=10)
    again, _ = calibration.calibrate_across_folds(moved, lambda fold: y, fold_of)
    assert not np.allclose(again[fold_of == 1], calibrated[fold_of == 1])


def runs_of(rng, n, run):
    """Binary labels that come in runs (regimes) of mean length `run`."""
    switches = rng.random(n) < 1 / run
    return (np.cumsum(switches) + rng.integers(2)) % 2


def test_circular_shift_null_holds_its_level_when_labels_and_predictions_come_in_runs():
    from moola.evaluation.crossfit import Evaluation, chance_bootstrap, circular_shift_p_value

    rng = np.random.default_rng(7)
    n, trials = 98, 200
    shift_hits = ci_hits = 0
    for _ in range(trials):
        y, pred = runs_of(rng, n, 20), runs_of(rng, n, 20)  # independent: no signal at all
        ev = Evaluation("x", np.arange(n), y, np.zeros(n, int), (0,), np.eye(2)[pred][None])
        shift_hits += circular_shift_p_value(ev) < 0.05
        ci_hits += chance_bootstrap(ev, n_resamples=300)["delta_ci95"][0] > 0
    assert shift_hits / trials <= 0.10  # near its 5% level
    assert ci_hits / trials > shift_hits / trials  # the block CI alone is fooled more often
    strong = runs_of(rng, n, 20)
    ev = Evaluation("s", np.arange(n), strong, np.zeros(n, int), (0,), np.eye(2)[strong][None])
    assert circular_shift_p_value(ev) < 0.05


def test_bootstrap_runs_hold_whole_windows_and_equal_the_row_rule_when_each_row_is_a_window():
    from moola.evaluation.crossfit import default_run_length, window_run_length

    assert window_run_length(98, 1.0, holdout=False) == default_run_length(98) == 5
    assert window_run_length(78, 1.0, holdout=False) == default_run_length(78) == 4
    assert window_run_length(20, 1.0, holdout=True) == 1
    assert window_run_length(98, 98 / 66, holdout=False) == 6  # ~4 windows of ~1.5 rows
    assert window_run_length(20, 2.0, holdout=True) == 2  # one window of two labeled spans
