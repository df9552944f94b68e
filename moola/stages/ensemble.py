"""Gate 7: calibrate each approved model without scoring its calibration rows, then average.

Under the folds (`run_crossfit_ensemble`), each fold's out-of-fold probabilities are calibrated by
isotonic maps fitted on the other folds' rows. Holdout (`run_ensemble`): with `test_indices`, the
maps are fitted on val and score the test rows; without, they are cross-fitted on val. Either
way no row is scored by a calibration that saw it.
"""

from __future__ import annotations

import numpy as np

from moola.evaluation.crossfit import Evaluation, paired_block_bootstrap
from moola.stages.context import RunContext
from moola.stages.protocol import oof_record, spread
from moola.training.calibration import (
    brier_score,
    calibrate_across_folds,
    cross_fit_calibrate,
    expected_calibration_error,
    fit_then_score,
    reliability_bins,
)
from moola.training.metrics import macro_f1, paired_bootstrap_delta


def run_ensemble(ctx: RunContext, candidates: dict, used: list) -> dict:
    """Holdout: calibrated probability averaging of the base seed's fits, on the split file's rows
    exactly as before. `candidates`: name -> Trained (every model calibrated and reported);
    `used`: the names averaged. MiniRocket contributes its ridge scores (softmaxed), not one-hots."""
    config = ctx.profile.ensemble
    y = ctx.dataset.y
    y_val, test = y[ctx.val], ctx.test
    has_test = len(test) > 0
    y_scored = y[test] if has_test else y_val
    k = ctx.n_classes
    before, after, per_member = {}, {}, {}
    for name, member in candidates.items():
        val_proba, test_proba = member.extra.get("val_score_proba", member.val_proba), member.test_proba
        if has_test:
            raw, calibrated = test_proba, fit_then_score(val_proba, y_val, test_proba)
        else:
            raw, (calibrated, _) = val_proba, cross_fit_calibrate(val_proba, y_val, config.calibration_folds, ctx.seed)
        before[name], after[name] = raw, calibrated
        per_member[name] = _calibration_numbers(raw, calibrated, y_scored, macro_f1(y_scored, raw.argmax(1), k),
                                                macro_f1(y_scored, calibrated.argmax(1), k))
    average = np.mean([after[name] for name in used], axis=0)  # (n_scored, K)
    average_raw = np.mean([before[name] for name in used], axis=0)
    best_name = max(used, key=lambda n: per_member[n]["f1"])
    delta = paired_bootstrap_delta(y_scored, average.argmax(1), before[best_name].argmax(1), k,
                                   ctx.profile.thresholds.bootstrap_resamples, ctx.seed)
    numbers = _calibration_numbers(average_raw, average, y_scored, macro_f1(y_scored, average_raw.argmax(1), k),
                                   macro_f1(y_scored, average.argmax(1), k))
    return {
        "scored_on": "test rows (calibrated on val)" if has_test else
                     f"val rows, out-of-fold ({config.calibration_folds}-fold cross-fitted calibration)",
        "members": per_member, "members_used": list(used), "n_members": len(used), "averaged": len(used) > 1,
        "f1": numbers["f1_calibrated"], "f1_uncalibrated": numbers["f1"], **_without_f1(numbers),
        "best_member": best_name, "best_member_f1": per_member[best_name]["f1"], **delta,
        "ci_half_width": (delta["delta_ci95"][1] - delta["delta_ci95"][0]) / 2,
        "oof": {"rows": (test if has_test else ctx.val).tolist(), "y": y_scored.tolist(),
                "fold_of": [0] * len(y_scored), "seeds": [ctx.seed], "pred": [average.argmax(1).tolist()]},
    }


def _without_f1(numbers: dict) -> dict:
    return {key: value for key, value in numbers.items() if key not in ("f1", "f1_calibrated")}


def _calibration_numbers(before: np.ndarray, after: np.ndarray, y: np.ndarray, f1: float, f1_calibrated: float) -> dict:
    """F1, ECE, Brier and reliability bins of `(n, K)` probabilities before and after calibration."""
    return {"f1": f1, "f1_calibrated": f1_calibrated,
            "ece_before": expected_calibration_error(before, y), "ece_after": expected_calibration_error(after, y),
            "brier_before": brier_score(before, y), "brier_after": brier_score(after, y),
            "reliability": {"before": reliability_bins(before, y), "after": reliability_bins(after, y)}}


def _calibrated(ctx: RunContext, ev: Evaluation) -> tuple[Evaluation, list]:
    """Each seed's out-of-fold probabilities calibrated across folds: fold f's maps are fitted on
    the rows fold f trained on (other folds' rows minus its purged rows; walk-forward: earlier
    folds' only), with the labels its fits saw (under --shuffle-labels: permuted)."""
    folds = {fold.index: fold for fold in ctx.folds}
    past_only = ctx.profile.evaluation.cv == "walk-forward"

    def purged(f) -> np.ndarray:
        return np.isin(ev.rows, folds[int(f)].purged)

    proba, notes = [], []
    for seed, p in zip(ev.seeds, ev.proba):
        calibrated, seed_notes = calibrate_across_folds(
            p, lambda f, seed=seed: ctx.for_fit(folds[int(f)], seed).dataset.y[ev.rows], ev.fold_of,
            past_only=past_only, excluded_for=purged, n_folds=ctx.profile.ensemble.calibration_folds,
            seed=ctx.settings.seed)
        proba.append(calibrated)
        notes += seed_notes
    return Evaluation(ev.name, ev.rows, ev.y, ev.fold_of, ev.seeds, np.stack(proba)), sorted(set(notes))


def _stacked(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Every seed's rows one after another: `(S * n, K)` probabilities and `(S * n,)` labels."""
    return ev.proba.reshape(-1, ev.n_classes), np.tile(ev.y, len(ev.seeds))


def _evaluation_numbers(raw: Evaluation, calibrated: Evaluation) -> dict:
    (before, y), (after, _) = _stacked(raw), _stacked(calibrated)
    return _calibration_numbers(before, after, y, raw.val_f1, calibrated.val_f1)


def run_crossfit_ensemble(ctx: RunContext, candidates: dict, used: list) -> dict:
    """Calibrated probability averaging over the folds' pooled out-of-fold predictions, per seed.

    `candidates`: name -> Evaluation (MiniRocket's: its softmaxed ridge scores), every one
    calibrated and reported; `used`: the names averaged.
    """
    calibrated, notes = {}, []
    for name, ev in candidates.items():
        calibrated[name], member_notes = _calibrated(ctx, ev)
        notes += [f"{name}: {note}" for note in member_notes]
    per_member = {name: _evaluation_numbers(candidates[name], calibrated[name]) for name in candidates}
    first = calibrated[used[0]]

    def average(evaluations: dict, label: str) -> Evaluation:
        return Evaluation(label, first.rows, first.y, first.fold_of, first.seeds,
                          np.mean([evaluations[name].proba for name in used], axis=0))

    ensemble, ensemble_raw = average(calibrated, "ensemble"), average(candidates, "ensemble_raw")
    best_name = max(used, key=lambda n: per_member[n]["f1"])
    delta = paired_block_bootstrap(ensemble, candidates[best_name], ctx.profile.thresholds.bootstrap_resamples,
                                   ctx.settings.seed)
    numbers = _evaluation_numbers(ensemble_raw, ensemble)
    fitted_on = ("earlier folds' rows minus its purged rows; the first scored fold, with no past, cross-fitted "
                 "within its own rows" if ctx.profile.evaluation.cv == "walk-forward"
                 else "other folds' rows minus its purged rows")
    return {
        "scored_on": f"every scored row, out of fold ({len(ctx.folds)} folds: each fold calibrated by isotonic "
                     f"maps fitted on the {fitted_on})", "calibration_notes": notes,
        "members": per_member, "members_used": list(used), "n_members": len(used), "averaged": len(used) > 1,
        "f1": ensemble.val_f1, "f1_uncalibrated": ensemble_raw.val_f1, "per_seed_f1": ensemble.per_seed_f1,
        **_without_f1(numbers), "best_member": best_name, "best_member_f1": per_member[best_name]["f1"], **delta,
        **spread(ensemble, candidates[best_name]), "oof": oof_record(ensemble),
    }
