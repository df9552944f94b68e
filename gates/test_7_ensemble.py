"""Gate 7 (advisory): calibrated averaging of the models that passed their own gates this session."""

import dataclasses

import pytest

from moola.stages.augmented import augment_verdict
from moola.stages.ensemble import run_crossfit_ensemble, run_ensemble
from moola.stages.protocol import compare
from moola.stages.rules import baseline_warning, ensemble_warning


@pytest.mark.dependency(name="gate7", depends=["gate6"], scope="session")
def test_ensemble_matches_best_member(run, finetuned, augmented_run, baseline, minirocket, gate_record):
    members, left_out = [finetuned], {}
    policy = run.profile.thresholds.gate_policy
    # Each member must pass its own gate's rule on this session's numbers (also in -k runs).
    aug_failures, _ = augment_verdict(run, augmented_run, finetuned)
    if aug_failures:
        left_out[augmented_run.name] = "; ".join(aug_failures)
    else:
        members.append(augmented_run)
    base_warning = baseline_warning(baseline.val_f1, finetuned.val_f1, policy,
                                    compare(run, finetuned, baseline, "6_baseline_simplelstm")["delta_ci95"])
    if base_warning:
        left_out[baseline.name] = base_warning
    else:
        members.append(baseline)
    if run.holdout:  # the split file's rows, exactly as before: the base seed's models
        fit = (run.settings.seed, run.folds[0].index)
        renamed = [dataclasses.replace(m.fits[fit], name=m.name) for m in members]
        report = run_ensemble(run, renamed, dataclasses.replace(minirocket.fits[fit], name=minirocket.name))
    else:
        report = run_crossfit_ensemble(run, members, minirocket)
    gate_record.model = "calibrated_average"
    gate_record.config = dataclasses.asdict(run.profile.ensemble)
    gate_record.metrics = {"val_f1": report["f1"], **{k: report[k] for k in (
        "f1_uncalibrated", "ece_before", "ece_after", "brier_before", "brier_after", "n_members", "best_member",
        "best_member_f1", "members", "f1_other_minirocket_choice")}}
    gate_record.comparison = {"baseline_gate": report["best_member"], "baseline_f1": report["best_member_f1"],
                              **{k: report[k] for k in ("delta", "delta_ci95", "ci_half_width")}, "policy": policy}
    gate_record.extra = {"members_used": report["members_used"], "left_out": left_out,
                         "scored_on": report["scored_on"], "calibration_notes": report.get("calibration_notes", []),
                         "note": None if report["averaged"] else "one member: calibrated only, nothing averaged"}
    warning = ensemble_warning(report["f1"], report["best_member"], report["best_member_f1"],
                               run.profile.ensemble.tolerance, policy, report["delta_ci95"])
    if warning:
        gate_record.warn(warning)
