"""Gate 2: the classical control. If MiniRocket matches the pretrained LSTM, pretraining is not paying."""

import pytest

from moola.stages.protocol import compare, pooled_metrics
from moola.stages.rules import control_failures


@pytest.mark.dependency(name="gate2", depends=["gate1"], scope="session")
def test_minirocket_control_stays_below_lstm(run, smoke, minirocket, gate_record):
    gate_record.model = minirocket.name
    gate_record.config = {"transform": "MiniRocketMultivariate", "random_state": "the fit's seed",
                          "head": "StandardScaler(with_mean=False) + RidgeClassifierCV(logspace(-3, 3, 10))"}
    gate_record.metrics = {**pooled_metrics(run, minirocket),
                           "ridge_alpha": [fit.metrics["ridge_alpha"] for fit in minirocket.fits.values()]}
    # Delta reads "smoke minus MiniRocket": the gate wants it positive.
    gate_record.comparison = {**compare(run, smoke, minirocket, "2_control_minirocket"),
                              "candidate_gate": "1_smoke_enhanced"}
    failures = control_failures(minirocket.val_f1, smoke.val_f1, run.profile.thresholds.gate_policy,
                                gate_record.comparison["delta_ci95"])
    assert not failures, "; ".join(failures)
