"""Gate 5: pseudo-samples from each fit's train rows only, filtered, and no worse on the real scored rows."""

import dataclasses

import numpy as np
import pytest

from moola.stages.augmented import augment_verdict
from moola.stages.protocol import oof_record, pooled_metrics, recipe_cost


@pytest.mark.dependency(name="gate5", depends=["gate4"], scope="session")
def test_augmented_training_holds_val_f1(run, pretrained, finetuned, augmented_run, gate_record):
    failures, verdict = augment_verdict(run, augmented_run, finetuned)
    final = augmented_run.final
    numbers, samples, statistics = verdict["saved"]
    quality = samples.quality
    gate_record.model = augmented_run.name
    gate_record.config = dataclasses.asdict(run.profile.augment)
    gate_record.metrics = {**pooled_metrics(run, augmented_run), "steps": final.steps, **numbers,
                           "finetune_f1": finetuned.val_f1, "per_fit": verdict["per_fit"],
                           "weights_used": final.extra["weights_used"],
                           "filter_counts": samples.counts, "ks": samples.ks,
                           "quality": {"min": float(quality.min()), "median": float(np.median(quality)),
                                       "max": float(quality.max())} if len(quality) else None,
                           "generators": dict(zip(*np.unique([p["generator"] for p in samples.provenance],
                                                             return_counts=True))),
                           "cost": recipe_cost(pretraining=pretrained.pretrain_s, fine_tuning=finetuned.train_time_s,
                                               augmented=augmented_run.train_time_s)}
    gate_record.comparison = verdict["comparison"]
    gate_record.extra = {"encoder_source": pretrained.source,
                         "synthetic_rows_of": "the saved model's fit (per_fit: every fold's)",
                         "synthetic_stats": statistics, "history": final.history,
                         "oof": oof_record(augmented_run.evaluation)}
    gate_record.artifacts = {"model": str(final.artifact), "synthetic_provenance": str(final.extra["provenance"])}
    if failures:  # the rule's message alone: no traceback of the fixtures' objects
        pytest.fail("; ".join(failures), pytrace=False)
