"""Gate 5: pseudo-samples from train rows only, filtered, and no worse on the real val rows."""

import dataclasses

import numpy as np
import pytest

from moola.stages.augmented import augment_numbers
from moola.stages.classifiers import compare
from moola.stages.rules import augment_failures


@pytest.mark.dependency(name="gate5", depends=["gate4"], scope="session")
def test_augmented_training_holds_val_f1(run, pretrained, finetuned, augmented_run, gate_record):
    trained, samples = augmented_run
    numbers = augment_numbers(run, trained, samples, finetuned)
    gate_record.model = trained.name
    gate_record.config = dataclasses.asdict(run.profile.augment)
    quality = samples.quality
    gate_record.metrics = {**trained.metrics, "steps": trained.steps, **numbers,
                           "val_f1_by_weights": trained.extra["val_f1_by_weights"],
                           "weights_used": trained.extra["weights_used"], "l2sp_penalty": trained.extra["l2sp_penalty"],
                           "filter_counts": samples.counts, "ks": samples.ks,
                           "quality": {"min": float(quality.min()), "median": float(np.median(quality)),
                                       "max": float(quality.max())} if len(quality) else None,
                           "generators": dict(zip(*np.unique([p["generator"] for p in samples.provenance],
                                                             return_counts=True)))}
    gate_record.comparison = compare(run, trained, finetuned, "4_finetune_enhanced")
    gate_record.extra = {"encoder_source": pretrained.source}
    gate_record.artifacts = {"model": str(trained.artifact), "synthetic_provenance": str(trained.extra["provenance"])}
    failures = augment_failures(numbers, run.profile.augment, run.profile.thresholds.gate_policy,
                                gate_record.comparison["delta_ci95"])
    assert not failures, "; ".join(failures)
