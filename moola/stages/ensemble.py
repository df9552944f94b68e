"""Gate 7: calibrate each approved model without scoring its calibration rows, then average.

With `test_indices`, the isotonic maps are fitted on val and score the test rows. Without, they
are cross-fitted on val: each val row is scored by maps fitted on the other folds. Either way no
row is scored by a calibration that saw it.
"""

from __future__ import annotations

import numpy as np

from moola.stages.classifiers import Trained
from moola.stages.context import RunContext
from moola.training.calibration import brier_score, cross_fit_calibrate, expected_calibration_error, fit_then_score
from moola.training.metrics import macro_f1, paired_bootstrap_delta


def _scores(member: Trained) -> tuple[np.ndarray, np.ndarray | None]:
    """Val and test probabilities; MiniRocket contributes its ridge scores (softmaxed), not one-hots."""
    val = member.extra.get("val_score_proba", member.val_proba)
    return val, member.test_proba


def run_ensemble(ctx: RunContext, members: list, minirocket: Trained | None = None) -> dict:
    """Calibrated probability averaging of `members` (and MiniRocket when the config includes it)."""
    config = ctx.profile.ensemble
    y = ctx.dataset.y
    y_val, test = y[ctx.val], ctx.dataset.split.test
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
    }
    if minirocket is not None:  # recorded either way, so a user can see whether its scores would help
        other = used[:-1] if config.include_minirocket else used + [minirocket.name]
        report["f1_other_minirocket_choice"] = macro_f1(y_scored, np.mean([after[n] for n in other], 0).argmax(1), k)
    return report
