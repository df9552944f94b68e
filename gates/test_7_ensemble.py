"""Gate 7 (advisory): calibrated averaging of the models that passed their own gates this session."""

import dataclasses

import pytest

from moola.stages.augmented import augment_numbers
from moola.stages.classifiers import compare
from moola.stages.ensemble import run_ensemble
from moola.stages.rules import augment_failures, baseline_warning, ensemble_warning


@pytest.mark.dependency(name="gate7", depends=["gate6"], scope="session")
def test_ensemble_matches_best_member(run, finetuned, augmented_run, baseline, minirocket, gate_record):
    trained, samples = augmented_run
    members, left_out = [finetuned], {}
    policy = run.profile.thresholds.gate_policy
    # Each member must pass its own gate's rule on this session's numbers (also in -k runs).
    aug_failures = augment_failures(augment_numbers(run, trained, samples, finetuned), run.profile.augment, policy,
                                    compare(run, trained, finetuned, "4_finetune_enhanced")["delta_ci95"])
    if aug_failures:
        left_out["enhanced_simple_lstm_augmented"] = "; ".join(aug_failures)
    else:
        members.append(dataclasses.replace(trained, name="enhanced_simple_lstm_augmented"))
    base_warning = baseline_warning(baseline.metrics["val_f1"], finetuned.metrics["val_f1"], policy,
                                    compare(run, finetuned, baseline, "6_baseline_simplelstm")["delta_ci95"])
    if base_warning:
        left_out[baseline.name] = base_warning
    else:
        members.append(baseline)
    report = run_ensemble(run, members, minirocket)
    gate_record.model = "calibrated_average"
    gate_record.config = dataclasses.asdict(run.profile.ensemble)
    gate_record.metrics = {"val_f1": report["f1"], **{k: report[k] for k in (
        "f1_uncalibrated", "ece_before", "ece_after", "brier_before", "brier_after", "n_members", "best_member",
        "best_member_f1", "members", "f1_other_minirocket_choice")}}
    gate_record.comparison = {"baseline_gate": report["best_member"], "baseline_f1": report["best_member_f1"],
                              "delta": report["delta"], "delta_ci95": report["delta_ci95"], "policy": policy}
    gate_record.extra = {"members_used": report["members_used"], "left_out": left_out,
                         "scored_on": report["scored_on"],
                         "note": None if report["averaged"] else "one member: calibrated only, nothing averaged"}
    warning = ensemble_warning(report["f1"], report["best_member"], report["best_member_f1"],
                               run.profile.ensemble.tolerance, policy, report["delta_ci95"])
    if warning:
        gate_record.warn(warning)
