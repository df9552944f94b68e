"""A results line's out-of-fold predictions as an `Evaluation`: what `moola select`, the report and
the family adjustment (`moola.iterate.adjust`) recompute every statistic from."""

from __future__ import annotations

import numpy as np

from moola.evaluation.crossfit import Evaluation, window_run_length

# the models a run scores, by the gate line that scores them
MODEL_OF_GATE = {"1_smoke_enhanced": "smoke", "2_control_minirocket": "minirocket",
                 "4_finetune_enhanced": "finetuned", "5_augment_train": "augmented",
                 "6_baseline_simplelstm": "baseline", "7_ensemble": "ensemble"}

def line_run_length(line: dict, n_scored: int | None = None) -> int | None:
    """The gates' bootstrap run length for a line's run: whole windows (`window_run_length`) when
    the line records `data.n_windows`; else (lines written before it) rows: 1 under holdout, the
    default otherwise."""
    data, holdout = line.get("data") or {}, (line.get("evaluation") or {}).get("cv") == "holdout"
    if not (data.get("n_labeled") and data.get("n_windows") and n_scored):
        return 1 if holdout else None
    return window_run_length(int(n_scored), data["n_labeled"] / data["n_windows"], holdout)


def evaluation_of(line: dict) -> Evaluation | None:
    """The line's pooled out-of-fold predictions as an Evaluation (one-hot probabilities: every
    statistic here reads the predicted classes only)."""
    oof = line.get("oof")
    if not isinstance(oof, dict) or not oof.get("pred"):
        return None
    n_classes = len((line.get("data") or {}).get("classes") or []) or int(max(max(oof["y"]), np.max(oof["pred"]))) + 1
    pred = np.asarray(oof["pred"], dtype=np.int64)  # (S, n)
    return Evaluation(MODEL_OF_GATE.get(line["gate"], line["gate"]), np.asarray(oof["rows"]), np.asarray(oof["y"]),
                      np.asarray(oof["fold_of"]), tuple(oof["seeds"]), np.eye(n_classes)[pred])
