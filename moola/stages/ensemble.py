"""Gate 7: calibrate each approved model without scoring its calibration rows, then average.

Under the folds (`run_crossfit_ensemble`), each fold's out-of-fold probabilities are calibrated by
isotonic maps fitted on the other folds' rows. Holdout (`run_ensemble`): with `test_indices`, the
maps are fitted on val and score the test rows; without, they are cross-fitted on val. Either
way no row is scored by a calibration that saw it.
"""

from __future__ import annotations

import numpy as np

from moola.evaluation.crossfit import Evaluation, paired_block_bootstrap
from moola.stages.classifiers import Trained
from moola.stages.context import RunContext
from moola.stages.protocol import CrossFitted
from moola.training.calibration import (
    brier_score,
    calibrate_across_folds,
    cross_fit_calibrate,
    expected_calibration_error,
    fit_then_score,
)
from moola.training.metrics import macro_f1, paired_bootstrap_delta


def _scores(member: Trained) -> tuple[np.ndarray, np.ndarray | None]:
    """Val and test probabilities; MiniRocket contributes its ridge scores (softmaxed), not one-hots."""
    val = member.extra.get("val_score_proba", member.val_proba)
    return val, member.test_proba


def run_ensemble(ctx: RunContext, members: list, minirocket: Trained | None = None) -> dict:
    """Holdout: calibrated probability averaging of the base seed's `members` (Trained) and
    MiniRocket when the config includes it, on the split file's rows exactly as before."""
    config = ctx.profile.ensemble
    y = ctx.dataset.y
    y_val, test = y[ctx.val], ctx.test
    has_test = len(test) > 0
    y_scored = y[test] if has_test else y_val
    k = ctx.n_classes
    candidates = list(members) + ([minirocket] if minirocket is not None else [])
    before, after, per_member = {}, {}, {}
    for member in candidates:
        val_proba, test_proba = _scores(member)
        if has_test:
            raw, calibrated = test_proba, fit_then_score(val_proba, y_val, test_proba)
        else:
            raw, (calibrated, _) = val_proba, cross_fit_calibrate(val_proba, y_val, config.calibration_folds, ctx.seed)
        before[member.name], after[member.name] = raw, calibrated
        per_member[member.name] = {
            "f1": macro_f1(y_scored, raw.argmax(1), k), "f1_calibrated": macro_f1(y_scored, calibrated.argmax(1), k),
            "ece_before": expected_calibration_error(raw, y_scored), "ece_after": expected_calibration_error(calibrated, y_scored),
            "brier_before": brier_score(raw, y_scored), "brier_after": brier_score(calibrated, y_scored),
        }
    used = [m.name for m in members] + ([minirocket.name] if minirocket is not None and config.include_minirocket else [])
    average = np.mean([after[name] for name in used], axis=0)  # (n_scored, K)
    average_raw = np.mean([before[name] for name in used], axis=0)
    best_name = max((m.name for m in members), key=lambda n: per_member[n]["f1"])
    best_pred = before[best_name].argmax(1)
    delta = paired_bootstrap_delta(y_scored, average.argmax(1), best_pred, k,
                                   ctx.profile.thresholds.bootstrap_resamples, ctx.seed)
    report = {
        "scored_on": "test rows (calibrated on val)" if has_test else
                     f"val rows, out-of-fold ({config.calibration_folds}-fold cross-fitted calibration)",
        "members": per_member, "members_used": used, "n_members": len(used), "averaged": len(used) > 1,
        "f1": macro_f1(y_scored, average.argmax(1), k), "f1_uncalibrated": macro_f1(y_scored, average_raw.argmax(1), k),
        "ece_before": expected_calibration_error(average_raw, y_scored), "ece_after": expected_calibration_error(average, y_scored),
        "brier_before": brier_score(average_raw, y_scored), "brier_after": brier_score(average, y_scored),
        "best_member": best_name, "best_member_f1": per_member[best_name]["f1"], **delta,
        "ci_half_width": (delta["delta_ci95"][1] - delta["delta_ci95"][0]) / 2,
    }
    if minirocket is not None:  # recorded either way, so a user can see whether its scores would help
        other = used[:-1] if config.include_minirocket else used + [minirocket.name]
        report["f1_other_minirocket_choice"] = macro_f1(y_scored, np.mean([after[n] for n in other], 0).argmax(1), k)
    return report


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


def _calibration_numbers(raw: Evaluation, calibrated: Evaluation) -> dict:
    (before, y), (after, _) = _stacked(raw), _stacked(calibrated)
    return {"f1": raw.val_f1, "f1_calibrated": calibrated.val_f1,
            "ece_before": expected_calibration_error(before, y), "ece_after": expected_calibration_error(after, y),
            "brier_before": brier_score(before, y), "brier_after": brier_score(after, y)}


def run_crossfit_ensemble(ctx: RunContext, members: list, minirocket: CrossFitted | None = None) -> dict:
    """Calibrated probability averaging over the folds' pooled out-of-fold predictions, per seed.

    `members`: CrossFitted stages; MiniRocket contributes its ridge scores (softmaxed) when given,
    and joins the average only when `ensemble.include_minirocket` says so.
    """
    config = ctx.profile.ensemble
    raw = {m.name: m.evaluation for m in members}
    if minirocket is not None:
        raw[minirocket.name] = minirocket.evaluation_of("val_score_proba")
    calibrated, notes = {}, []
    for name, ev in raw.items():
        calibrated[name], member_notes = _calibrated(ctx, ev)
        notes += [f"{name}: {note}" for note in member_notes]
    per_member = {name: _calibration_numbers(raw[name], calibrated[name]) for name in raw}
    used = [m.name for m in members] + ([minirocket.name] if minirocket is not None and config.include_minirocket else [])
    first = calibrated[used[0]]

    def average(evaluations: dict, names: list, label: str) -> Evaluation:
        return Evaluation(label, first.rows, first.y, first.fold_of, first.seeds,
                          np.mean([evaluations[name].proba for name in names], axis=0))

    ensemble, ensemble_raw = average(calibrated, used, "ensemble"), average(raw, used, "ensemble_raw")
    best_name = max((m.name for m in members), key=lambda n: per_member[n]["f1"])
    delta = paired_block_bootstrap(ensemble, raw[best_name], ctx.profile.thresholds.bootstrap_resamples,
                                   ctx.settings.seed)
    numbers = _calibration_numbers(ensemble_raw, ensemble)
    fitted_on = ("earlier folds' rows minus its purged rows; the first scored fold, with no past, cross-fitted "
                 "within its own rows" if ctx.profile.evaluation.cv == "walk-forward"
                 else "other folds' rows minus its purged rows")
    report = {
        "scored_on": f"every scored row, out of fold ({len(ctx.folds)} folds: each fold calibrated by isotonic "
                     f"maps fitted on the {fitted_on})", "calibration_notes": notes,
        "members": per_member, "members_used": used, "n_members": len(used), "averaged": len(used) > 1,
        "f1": ensemble.val_f1, "f1_uncalibrated": ensemble_raw.val_f1, "per_seed_f1": ensemble.per_seed_f1,
        **{key: numbers[key] for key in ("ece_before", "ece_after", "brier_before", "brier_after")},
        "best_member": best_name, "best_member_f1": per_member[best_name]["f1"], **delta,
    }
    if minirocket is not None:  # recorded either way, so a user can see whether its scores would help
        other = used[:-1] if config.include_minirocket else used + [minirocket.name]
        report["f1_other_minirocket_choice"] = average(calibrated, other, "other").val_f1
    return report
