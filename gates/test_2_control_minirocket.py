"""Gate 2: the classical control. If MiniRocket matches the pretrained LSTM, pretraining is not paying."""

import pytest

from moola.stages.deliverable import save_control
from moola.stages.protocol import compare, oof_record, pooled_metrics, recipe_cost
from moola.stages.rules import control_failures


@pytest.mark.dependency(name="gate2", depends=["gate1"], scope="session")
def test_minirocket_control_stays_below_lstm(run, smoke, minirocket, gate_record):
    gate_record.model = minirocket.name
    gate_record.config = {"transform": "MiniRocketMultivariate", "random_state": "the fit's seed",
                          "head": "StandardScaler(with_mean=False) + RidgeClassifierCV(logspace(-3, 3, 10))"}
    gate_record.metrics = {**pooled_metrics(run, minirocket),
                           "ridge_alpha": [fit.metrics["ridge_alpha"] for fit in minirocket.fits.values()],
                           "cost": recipe_cost(minirocket=minirocket.train_time_s)}
    # Delta reads "smoke minus MiniRocket": the gate wants it positive.
    gate_record.comparison = {**compare(run, smoke, minirocket, "2_control_minirocket"),
                              "candidate_gate": "1_smoke_enhanced"}
    gate_record.extra = {"oof": oof_record(minirocket.evaluation)}
    saved = save_control(run, minirocket)  # the refit on every labeled row, read back and checked
    if saved:
        gate_record.extra["artifact"] = saved
        gate_record.artifacts = {"model": saved["path"]}
    failures = control_failures(minirocket.val_f1, smoke.val_f1, run.profile.thresholds.gate_policy,
                                gate_record.comparison["delta_ci95"])
    if failures:  # the rule's message alone: no traceback of the fixtures' objects
        pytest.fail("; ".join(failures), pytrace=False)
