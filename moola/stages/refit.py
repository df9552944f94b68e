"""The saved model of a cross-fitted recipe: a refit on every labeled row, trained like the scored
fits, and checked against them.

The gate numbers are the fold models' (out of fold); the file holds one more model, trained on
every labeled row. Two things keep it the recipe that was scored:

- **The same optimizer steps and averaging.** The refit trains the same epochs, phases and SWA
  snapshots as the scored fits, at their mean optimizer steps per epoch (the nearest a batch size
  gives): its batch size grows with its rows (98 rows at the steps of 78 at batch 8: batch 10). At
  the configured batch size it would take ~30% more steps (325 against 250), and its EMA, counted
  in steps, would average another stretch. `refit_steps` gives the target; `RunContext.batch_size`
  the batch.
- **A check, recorded in the file and the gate line** (`refit_check`): how often the refit's class
  agrees with the fold models' and how far its probabilities move, on the pooled labeled rows (the
  refit trained on them, the fold models did not: in-sample, it drifts towards the labels) and on
  pool windows no classifier fit saw (the encoder was pretrained on that pool), against the mean
  of the base seed's fold models.

Only the base seed is refit; `val_f1` averages every seed's fold models. A gate-7 calibrator
fitted on the fold models' out-of-fold probabilities is the recipe's calibration, applied to the
refit: `refit_check`'s probability drift is how far that can be off.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from moola import artifacts
from moola.data.inputs import model_inputs
from moola.evaluation.crossfit import Evaluation
from moola.stages.context import RunContext
from moola.training.classifier import predict_proba

UNLABELED_SAMPLE = 256  # unlabeled windows the refit and the fold models are compared on


def refit_steps(fits: dict) -> int | None:
    """The scored fits' mean optimizer steps per epoch (rounded); None for a recipe without steps
    (MiniRocket). `fits`: (seed, fold) -> Trained."""
    per_epoch = [fit.extra["steps_per_epoch"] for fit in fits.values() if fit.extra.get("steps_per_epoch")]
    return round(float(np.mean(per_epoch))) if per_epoch else None


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Class agreement and probability drift (half the L1 distance: |Δp| of either class with two)."""
    drift = 0.5 * np.abs(a - b).sum(axis=1)
    return {"rows": len(a), "agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
            "mean_abs_prob_diff": float(drift.mean()), "max_abs_prob_diff": float(drift.max())}


def _proba(ctx: RunContext, model, windows: np.ndarray) -> np.ndarray:
    """Class probabilities of an LSTM; one-hot classes of MiniRocket (ridge scores are not probabilities)."""
    if isinstance(model, nn.Module):
        return predict_proba(model, windows, ctx.device)
    return np.eye(ctx.n_classes)[model.predict(windows)]


def refit_check(ctx: RunContext, evaluation: Evaluation, fits: dict, final) -> dict:
    """The refit against the fold models (module docstring). `final.val_proba`: the refit's
    probabilities on every labeled row (its scored rows are all of them)."""
    oof = evaluation.proba.mean(axis=0)  # (n, K) the recipe's out-of-fold probabilities, seed-averaged
    refit = np.asarray(final.val_proba)[evaluation.rows]
    right = oof.argmax(1) == evaluation.y  # the rows the recipe learned: a refit trained on them should keep them
    pooled = {**_agreement(refit, oof), "refit_accuracy": float(np.mean(refit.argmax(1) == evaluation.y)),
              "rows_right": int(right.sum()),
              "agreement_where_right": float(np.mean(refit.argmax(1)[right] == oof.argmax(1)[right]))
              if right.any() else None,
              "out_of_fold_accuracy": float(np.mean(oof.argmax(1) == evaluation.y)),
              "note": "the refit trained on these rows (in-sample); the fold models did not"}
    check = {"pooled_rows": pooled}
    steps = [fit.extra.get("total_steps") for fit in fits.values() if fit.extra.get("total_steps")]
    if steps and final.extra.get("total_steps"):
        check["steps"] = {"refit": final.extra["total_steps"], "refit_batch_size": final.extra["batch_size"],
                          "scored_fits_mean": float(np.mean(steps)), "scored_fits_range": [min(steps), max(steps)]}
    base = [fit.model for (seed, _), fit in fits.items() if seed == ctx.settings.seed]
    unlabeled = ctx.dataset.unlabeled.features
    if final.model is not None and base and len(unlabeled) and ctx.spec.needs_spans:
        check["unlabeled"] = {"skipped": "the classifiers read a labeled span and pool windows have none"}
    elif final.model is not None and base and len(unlabeled):
        rows = np.sort(np.random.default_rng(ctx.settings.seed).choice(
            len(unlabeled), min(UNLABELED_SAMPLE, len(unlabeled)), replace=False))
        windows = model_inputs(unlabeled[rows], ctx.spec)  # what the classifiers read: the visible bars
        folds = np.mean([_proba(ctx, model, windows) for model in base], axis=0)
        check["unlabeled"] = {**_agreement(_proba(ctx, final.model, windows), folds),
                              "against": f"the mean of the base seed's {len(base)} fold models",
                              "note": "pool windows no classifier fit saw (the encoder pretrained on the pool)"}
    return check


def record_check(ctx: RunContext, final, check: dict) -> None:
    """The check into the refit's line numbers and, when this session saved it, its file."""
    final.extra["refit_check"] = check
    if final.artifact is not None:
        artifacts.update_metadata(final.artifact, ctx.settings.run_id, {"refit_check": check})
