"""The run's protocol as the gates see it: folds per --cv, refits, gate 0's fold check, the pool filter."""

import numpy as np
import pytest

from moola.evaluation.folds import REFIT
from moola.stages.context import build_context, resolve_settings
from moola.stages.encoder import pretraining_pool
from moola.stages.env import verify_environment
from moola.stages.protocol import cross_fit_stage

from .conftest import DataFolder


def settings(root, tmp_path, *overrides):
    return resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "artifacts"), results=None,
                            device="cpu", profile="quick", overrides=list(overrides), seed=17, fresh=False,
                            demo=False)


def test_holdout_is_the_split_file_and_the_folds_score_every_row(tmp_path):
    root = DataFolder(tmp_path / "data", n_labeled=40).write()
    holdout = build_context(settings(root, tmp_path, "evaluation.cv=holdout"))
    (fold,) = holdout.folds
    assert fold.train.tolist() == list(range(28)) and fold.scored.tolist() == list(range(28, 40))
    blocked = build_context(settings(root, tmp_path, "evaluation.folds=4"))
    assert sorted(np.concatenate([f.scored for f in blocked.folds]).tolist()) == list(range(40))
    walk = build_context(settings(root, tmp_path, "evaluation.cv=walk-forward", "evaluation.folds=4"))
    assert all(f.train.max() < f.scored.min() for f in walk.folds) and len(walk.folds) == 3


def test_stage_fits_every_fold_and_seed_then_refits_on_every_row(tmp_path):
    root = DataFolder(tmp_path / "data", n_labeled=40).write()
    ctx = build_context(settings(root, tmp_path, "evaluation.folds=4", "evaluation.seeds=2"))
    seen = []

    class Fit:  # the smallest Trained a stage needs
        def __init__(self, view):
            seen.append((view.fold.index, view.seed, view.saves_models, set(view.train.tolist()),
                         set(view.val.tolist())))
            self.val_proba = np.tile([0.6, 0.4], (len(view.val), 1))
            self.metrics = {"train_acc": 1.0}
            self.model, self.artifact, self.extra = None, None, {}

    stage = cross_fit_stage(ctx, "toy", Fit)
    assert len(stage.fits) == 8 and stage.evaluation.proba.shape == (2, 40, 2)
    assert all(not train & scored for index, _, _, train, scored in seen if index != REFIT)
    refit = [s for s in seen if s[0] == REFIT]
    assert len(refit) == 1 and refit[0][1] == 17 and refit[0][2] and len(refit[0][3]) == 40
    assert not any(saves for index, _, saves, _, _ in seen if index != REFIT)  # only the refit writes models
    assert stage.fit_for(ctx.for_fit(ctx.folds[2], 18)) is stage.fits[(18, 2)]


def test_gate0_reports_a_fold_whose_train_rows_lack_a_class(tmp_path):
    folder = DataFolder(tmp_path / "data", n_labeled=20)
    labels = ["consolidation"] * 20
    for row in (8, 9, 10, 15):
        labels[row] = "retracement"
    folder.labeled["label"] = labels
    root = folder.write()
    report = verify_environment(settings(root, tmp_path))
    assert any("fold 2 trains on" in p and "use fewer --folds" in p for p in report["problems"]), report["problems"]
    assert not verify_environment(settings(root, tmp_path, "evaluation.cv=holdout"))["problems"]
    with pytest.raises(ValueError, match="fold 2 trains on"):
        build_context(settings(root, tmp_path))


def test_pretraining_pool_never_holds_a_scored_window(tmp_path):
    folder = DataFolder(tmp_path / "data", n_labeled=20, n_unlabeled=30)
    folder.unlabeled["features"][3] = folder.labeled["features"][5] * 1.0001  # a scaled copy of a train row
    folder.unlabeled["features"][7] = folder.labeled["features"][2]  # a copy of a train row
    root = folder.write()
    # holdout scores the val rows only (a val copy in the pool is a gate-0 problem: test_data_contract)
    holdout_rows, holdout = pretraining_pool(build_context(settings(root, tmp_path, "evaluation.cv=holdout")))
    assert 3 in holdout_rows and 7 in holdout_rows and holdout["identical_to_scored"] == 0
    blocked_rows, blocked = pretraining_pool(build_context(settings(root, tmp_path)))  # every row is scored
    assert 3 not in blocked_rows and 7 not in blocked_rows and blocked["identical_to_scored"] == 2
    assert blocked["used"] == 28


def test_a_pool_made_of_the_scored_windows_is_a_gate0_problem_not_a_crash(tmp_path):
    folder = DataFolder(tmp_path / "data", n_labeled=20, n_unlabeled=4)
    folder.unlabeled["features"] = folder.labeled["features"][:4].copy()  # the pool is train rows (UCR-style)
    root = folder.write()
    problems = verify_environment(settings(root, tmp_path))["problems"]
    assert any("pool window(s) left to pretrain on" in p and "--cv holdout" in p and "expected at least 2" in p for p in problems), problems
    assert not verify_environment(settings(root, tmp_path, "evaluation.cv=holdout"))["problems"]


def test_too_many_folds_is_a_gate0_problem(tmp_path):
    root = DataFolder(tmp_path / "data", n_labeled=20).write()
    problems = verify_environment(settings(root, tmp_path, "evaluation.folds=21"))["problems"]
    assert any("--folds 21" in p and "2 <= K <= 20" in p for p in problems), problems


def test_walk_forward_with_two_blocks_calibrates_its_one_fold_within_itself(tmp_path):
    from moola.evaluation.crossfit import cross_fit
    from moola.stages.ensemble import _calibrated

    root = DataFolder(tmp_path / "data", n_labeled=40).write()
    ctx = build_context(settings(root, tmp_path, "evaluation.cv=walk-forward", "evaluation.folds=2"))
    ev = cross_fit("toy", lambda fold, seed: np.random.default_rng(seed).dirichlet([1, 1], len(fold.scored)),
                   list(ctx.folds), ctx.dataset.y, ctx.seeds, 2)
    calibrated, notes = _calibrated(ctx, ev)
    assert calibrated.proba.shape == ev.proba.shape and "within its own rows" in notes[0]


def test_a_pool_of_one_usable_window_is_a_gate0_problem(tmp_path):
    folder = DataFolder(tmp_path / "data", n_labeled=20, n_unlabeled=4)
    folder.unlabeled["features"][:3] = folder.labeled["features"][[2, 5, 9]]  # three (train, all scored) rows copied
    root = folder.write()
    problems = verify_environment(settings(root, tmp_path))["problems"]
    assert any("1 pool window(s) left" in p for p in problems), problems


def test_calibration_never_fits_a_folds_maps_on_rows_that_fold_purged(tmp_path, monkeypatch):
    from moola.evaluation.crossfit import cross_fit
    from moola.stages.ensemble import _calibrated
    from moola.training import calibration

    root = DataFolder(tmp_path / "data", n_labeled=40).write()
    ctx = build_context(settings(root, tmp_path, "evaluation.folds=4"))
    ev = cross_fit("toy", lambda fold, seed: np.random.default_rng(int(fold.scored[0])).dirichlet([1, 1], len(fold.scored)),
                   list(ctx.folds), ctx.dataset.y, ctx.seeds, 2)
    fitted = []
    original = calibration._fit_isotonic
    monkeypatch.setattr(calibration, "_fit_isotonic", lambda p, y: fitted.append(p.copy()) or original(p, y))
    _calibrated(ctx, ev)
    assert len(fitted) == 4
    for fold, rows_fitted in zip(ctx.folds, fitted):
        purged_proba = ev.proba[0][np.isin(ev.rows, fold.purged)]
        assert len(purged_proba) and not any((rows_fitted == row).all(axis=1).any() for row in purged_proba)
        assert len(rows_fitted) == len(fold.train)  # exactly the rows this fold trained on
