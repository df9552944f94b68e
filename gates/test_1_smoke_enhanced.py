"""Gate 1: a 3-epoch EnhancedSimpleLSTM on the frozen pretrained encoder loads it, can learn, sets the baseline."""

import dataclasses

import pytest

from moola.stages.protocol import oof_record, pooled_metrics, recipe_cost
from moola.stages.rules import smoke_failures


@pytest.mark.dependency(name="gate1", depends=["gate0"], scope="session")
def test_smoke_run_loads_encoder(run, pretrained, smoke, overfit, gate_record):
    first = smoke.first_fit()  # every fit loads the same encoder: one match report stands for all
    gate_record.model = smoke.name
    gate_record.config = dataclasses.asdict(run.profile.smoke)
    gate_record.metrics = {**pooled_metrics(run, smoke), "steps": first.steps,
                           **{k: first.extra[k] for k in ("encoder_match_ratio", "encoder_matched", "encoder_tensors")},
                           **overfit, "cost": recipe_cost(pretraining=pretrained.pretrain_s, smoke=smoke.train_time_s)}
    gate_record.extra = {"encoder_source": pretrained.source, "encoder_fingerprint": pretrained.fingerprint,
                         "history": first.history, "history_of": "the first fold's fit",
                         "oof": oof_record(smoke.evaluation)}
    gate_record.artifacts = {"encoder": str(pretrained.path)}
    failures = smoke_failures(first.extra, run.profile.thresholds, overfit)
    if failures:  # the rule's message alone: no traceback of the fixtures' objects
        pytest.fail("; ".join(failures), pytrace=False)
