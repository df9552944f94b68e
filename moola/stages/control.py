"""Gate 2's control: MiniRocket + ridge on the same normalised windows and rows as the LSTM's fit."""

from __future__ import annotations

import numpy as np

from moola.models.minirocket import MiniRocketClassifier, score_proba
from moola.stages.classifiers import Trained
from moola.stages.context import RunContext
from moola.training.metrics import classification_metrics, majority_baseline


def run_minirocket(ctx: RunContext) -> Trained:
    y = ctx.dataset.y
    model = MiniRocketClassifier(seed=ctx.seed).fit(ctx.inputs[ctx.train], y[ctx.train])
    scores = model.decision_function(ctx.inputs[ctx.val])
    pred = model.predict(ctx.inputs[ctx.val])
    proba = np.eye(ctx.n_classes)[pred]  # (n_val, K) one-hot: ridge gives scores, not probabilities
    metrics = classification_metrics(y[ctx.val], proba)
    metrics["train_acc"] = float((model.predict(ctx.inputs[ctx.train]) == y[ctx.train]).mean())
    metrics["ridge_alpha"] = float(model.head_[-1].alpha_)
    metrics.update(majority_baseline(y[ctx.train], y[ctx.val], ctx.n_classes))
    test = ctx.test
    test_proba = score_proba(model.decision_function(ctx.inputs[test])) if len(test) else None
    return Trained("minirocket_ridge", model, proba, metrics, test_proba,
                   extra={"val_scores": scores, "val_score_proba": score_proba(scores)})

