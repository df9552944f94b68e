"""Gate 4: fine-tuning from the pretrained encoder beats the smoke run and a model that learned nothing."""

import dataclasses

import numpy as np
import pytest

from moola.stages.protocol import compare, compare_to_chance, oof_record, pooled_metrics, recipe_cost
from moola.stages.rules import finetune_failures


@pytest.mark.dependency(name="gate4", depends=["gate3"], scope="session")
def test_finetune_improves_on_gate1_and_majority(run, pretrained, smoke, finetuned, gate_record):
    fits = list(finetuned.fits.values())
    first = fits[0]
    gate_record.model = finetuned.name
    gate_record.config = dataclasses.asdict(run.profile.finetune)
    metrics = pooled_metrics(run, finetuned)
    gate_record.metrics = {**metrics, "steps": first.steps, "encoder_match_ratio": first.extra["encoder_match_ratio"],
                           "l2sp_penalty": float(np.mean([fit.extra["l2sp_penalty"] for fit in fits])),
                           # raw, EMA and SWA weights all scored (mean over fits); the saved and judged
                           # ones are fixed by finetune.select, never chosen on the scored rows
                           "val_f1_by_weights": {kind: float(np.mean([fit.extra["val_f1_by_weights"][kind]
                                                                      for fit in fits]))
                                                 for kind in first.extra["val_f1_by_weights"]},
                           "weights_used": first.extra["weights_used"],
                           "cost": recipe_cost(pretraining=pretrained.pretrain_s, fine_tuning=finetuned.train_time_s)}
    chance = compare_to_chance(run, finetuned)
    gate_record.comparison = {**compare(run, finetuned, smoke, "1_smoke_enhanced"),
                              "majority_f1": finetuned.majority.val_f1, "chance": chance}
    gate_record.extra = {"encoder_source": pretrained.source, "phase_lrs": first.extra["phase_lrs"],
                         "trainable_groups": first.extra["trainable"], "swa_bn_refreshed": first.extra["swa_bn_refreshed"],
                         "history": finetuned.final.history, "history_of": "the saved model's fit",
                         "oof": oof_record(finetuned.evaluation)}
    gate_record.artifacts = {"model": str(finetuned.final.artifact)}
    failures = finetune_failures(metrics, smoke.val_f1, run.n_classes, run.profile.thresholds.gate_policy,
                                 gate_record.comparison["delta_ci95"], chance)
    if failures:  # the rule's message alone: no traceback of the fixtures' objects
        pytest.fail("; ".join(failures), pytrace=False)
