"""Gate 7 (advisory): calibrated averaging of the configured models that passed their own gates
this session; the approved ensemble is saved as one weights-only file (`python -m moola predict`)."""

import dataclasses
import time

import pytest

from moola.stages.deliverable import save_deliverable
from moola.stages.ensemble import run_crossfit_ensemble, run_ensemble
from moola.stages.members import GATE_OF_MEMBER, choose_members, cost_parts
from moola.stages.protocol import recipe_cost, signal_record
from moola.stages.rules import ensemble_warning


@pytest.mark.dependency(name="gate7", depends=["gate6"], scope="session")
def test_ensemble_matches_best_member(run, pretrained, smoke, finetuned, augmented_run, baseline, minirocket,
                                      gate_record):
    stages = {"finetuned": finetuned, "augmented": augmented_run, "baseline": baseline, "minirocket": minirocket}
    members, left_out = choose_members(run, stages, smoke)
    gate_record.model = "calibrated_average"
    gate_record.config = dataclasses.asdict(run.profile.ensemble)
    gate_record.extra = {"members_used": list(members), "left_out": left_out, "member_gates": GATE_OF_MEMBER}
    if not members:
        pytest.skip("nothing to average: no model in ensemble.members passed its own gate in this session: "
                    + "; ".join(f"{name}: {why}" for name, why in left_out.items()))
    started = time.monotonic()
    if run.holdout:  # the split file's rows, exactly as before: the base seed's fits
        fit = (run.settings.seed, run.folds[0].index)
        report = run_ensemble(run, {name: stage.fits[fit] for name, stage in stages.items()}, list(members))
    else:
        report = run_crossfit_ensemble(run, {name: stage.evaluation_of("val_score_proba") if name == "minirocket"
                                             else stage.evaluation for name, stage in stages.items()}, list(members))
    gate_record.metrics = {"val_f1": report["f1"], **{k: report[k] for k in (
        "f1_uncalibrated", "ece_before", "ece_after", "brier_before", "brier_after", "n_members", "best_member",
        "best_member_f1")}, "cost": recipe_cost(**{part: seconds for name in members for part, seconds in
                                                    cost_parts(name, stages, pretrained.pretrain_s).items()},
                                                 calibration=time.monotonic() - started),
        "members": {name: {k: v for k, v in numbers.items() if k != "reliability"}
                                        for name, numbers in report["members"].items()},
        # what select's signal test reads (it recomputes it from `oof`): the ensemble is judged like every model
        **signal_record(run, report["oof"], stages)}
    gate_record.comparison = {"baseline_gate": GATE_OF_MEMBER[report["best_member"]],
                              "baseline_f1": report["best_member_f1"], "candidate_gate": "7_ensemble",
                              **{k: report[k] for k in ("delta", "delta_ci95", "ci_half_width") if k in report},
                              **{k: report[k] for k in ("per_fold_delta", "per_seed_delta") if k in report},
                              "policy": run.profile.thresholds.gate_policy}
    gate_record.extra.update({
        "scored_on": report["scored_on"], "calibration_notes": report.get("calibration_notes", []),
        "calibration": {"bins": 10, "models": {**{name: numbers["reliability"] for name, numbers in
                                                  report["members"].items()}, "ensemble": report["reliability"]}},
        "note": None if report["averaged"] else "one member: calibrated only, nothing averaged",
        "oof": report["oof"]})
    _, saved = save_deliverable(run, members)
    gate_record.extra["artifact"] = saved
    gate_record.artifacts = {"model": saved["path"]}
    warning = ensemble_warning(report["f1"], report["best_member"], report["best_member_f1"],
                               run.profile.ensemble.tolerance, run.profile.thresholds.gate_policy, report["delta_ci95"])
    if warning:
        gate_record.warn(warning)
