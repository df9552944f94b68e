"""Gate 2: the classical control. If MiniRocket matches the pretrained LSTM, pretraining is not paying."""

import pytest

from moola.stages.classifiers import compare
from moola.stages.rules import control_failures


@pytest.mark.dependency(name="gate2", depends=["gate1"], scope="session")
def test_minirocket_control_stays_below_lstm(run, smoke, minirocket, gate_record):
    gate_record.model = minirocket.name
    gate_record.config = {"transform": "MiniRocketMultivariate", "random_state": run.seed,
                          "head": "StandardScaler(with_mean=False) + RidgeClassifierCV(logspace(-3, 3, 10))"}
    gate_record.metrics = minirocket.metrics
    # Delta reads "smoke minus MiniRocket": the gate wants it positive.
    gate_record.comparison = {**compare(run, smoke, minirocket, "2_control_minirocket"),
                              "candidate_gate": "1_smoke_enhanced"}
    policy = run.profile.thresholds.gate_policy
    failures = control_failures(minirocket.metrics["val_f1"], smoke.metrics["val_f1"], policy,
                                gate_record.comparison["delta_ci95"])
    assert not failures, "; ".join(failures)
