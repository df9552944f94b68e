"""Gate 4: fine-tuning from the pretrained encoder beats the smoke run and the majority class."""

import dataclasses

import pytest

from moola.stages.classifiers import compare, compare_to_majority
from moola.stages.rules import finetune_failures


@pytest.mark.dependency(name="gate4", depends=["gate3"], scope="session")
def test_finetune_improves_on_gate1_and_majority(run, pretrained, smoke, finetuned, gate_record):
    gate_record.model = finetuned.name
    gate_record.config = dataclasses.asdict(run.profile.finetune)
    extra = finetuned.extra
    gate_record.metrics = {**finetuned.metrics, "steps": finetuned.steps,
                           "encoder_match_ratio": extra["encoder_match_ratio"], "l2sp_penalty": extra["l2sp_penalty"],
                           # raw, EMA and SWA weights all scored; `weights_used` is fixed by finetune.select
                           "val_f1_by_weights": extra["val_f1_by_weights"], "weights_used": extra["weights_used"]}
    vs_majority = compare_to_majority(run, finetuned)
    gate_record.comparison = {**compare(run, finetuned, smoke, "1_smoke_enhanced"),
                              "majority_delta": vs_majority["delta"], "majority_delta_ci95": vs_majority["delta_ci95"]}
    gate_record.extra = {"encoder_source": pretrained.source, "phase_lrs": extra["phase_lrs"],
                         "trainable_groups": extra["trainable"], "swa_bn_refreshed": extra["swa_bn_refreshed"]}
    gate_record.artifacts = {"model": str(finetuned.artifact)}
    failures = finetune_failures(finetuned.metrics, smoke.metrics["val_f1"], run.n_classes,
                                 run.profile.thresholds.gate_policy, gate_record.comparison["delta_ci95"],
                                 vs_majority["delta_ci95"])
    assert not failures, "; ".join(failures)
