"""Gate 7: calibrate each approved model without scoring its calibration rows, then average."""

from __future__ import annotations

import numpy as np

from moola.stages.context import RunContext
from moola.training.calibration import brier_score, cross_fit_calibrate, expected_calibration_error
from moola.training.metrics import macro_f1, paired_bootstrap_delta


def run_ensemble(ctx: RunContext, members: list) -> dict:
    """Cross-fitted isotonic calibration on val per member, then the mean of calibrated probabilities."""
    y_val = ctx.dataset.y[ctx.val]
    k = ctx.n_classes
    report = {"members": {}, "calibration": "cross-fit on val "
              f"({ctx.profile.ensemble.calibration_folds} folds, out-of-fold scores)"}
    calibrated = []
    for member in members:
        proba = member.val_proba
        after, _ = cross_fit_calibrate(proba, y_val, ctx.profile.ensemble.calibration_folds, ctx.seed)
        calibrated.append(after)
        report["members"][member.name] = {
            "val_f1": macro_f1(y_val, proba.argmax(1), k),
            "val_f1_calibrated": macro_f1(y_val, after.argmax(1), k),
            "ece_before": expected_calibration_error(proba, y_val), "ece_after": expected_calibration_error(after, y_val),
            "brier_before": brier_score(proba, y_val), "brier_after": brier_score(after, y_val),
        }
    average = np.mean(calibrated, axis=0)  # (n_val, K)
    best_name = max(report["members"], key=lambda n: report["members"][n]["val_f1"])
    best_pred = next(m for m in members if m.name == best_name).val_pred
    delta = paired_bootstrap_delta(y_val, average.argmax(1), best_pred, k,
                                   ctx.profile.thresholds.bootstrap_resamples, ctx.seed)
    report.update({
        "delta": delta["delta"], "delta_ci95": delta["delta_ci95"],
        "n_members": len(members), "averaged": len(members) > 1,
        "val_f1": macro_f1(y_val, average.argmax(1), k), "ece": expected_calibration_error(average, y_val),
        "brier": brier_score(average, y_val), "best_member": best_name,
        "best_member_f1": report["members"][best_name]["val_f1"],
    })
    return report
