"""Gate 6 (advisory): a small SimpleLSTM from scratch should lose to the pretrained, fine-tuned model."""

import dataclasses

import pytest

from moola.stages.protocol import compare, oof_record, pooled_metrics, recipe_cost
from moola.stages.rules import baseline_warning


@pytest.mark.dependency(name="gate6", depends=["gate5"], scope="session")
def test_simplelstm_stays_below_gate4(run, finetuned, baseline, gate_record):
    gate_record.model = baseline.name
    gate_record.config = dataclasses.asdict(run.profile.baseline)
    gate_record.metrics = {**pooled_metrics(run, baseline), "steps": baseline.final.steps,
                           "cost": recipe_cost(simplelstm=baseline.train_time_s)}
    # Delta reads "fine-tuned minus SimpleLSTM": positive is the pretraining benefit.
    gate_record.comparison = {**compare(run, finetuned, baseline, "6_baseline_simplelstm"),
                              "candidate_gate": "4_finetune_enhanced"}
    gate_record.artifacts = {"model": str(baseline.final.artifact)}
    gate_record.extra = {"history": baseline.final.history, "history_of": "the saved model's fit",
                         "oof": oof_record(baseline.evaluation)}
    warning = baseline_warning(baseline.val_f1, finetuned.val_f1, run.profile.thresholds.gate_policy,
                               gate_record.comparison["delta_ci95"])
    if warning:
        gate_record.warn(warning)
