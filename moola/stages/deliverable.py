"""Gate 7's deliverable: the approved members' saved fits, each calibrated on its recipe's
out-of-fold predictions, averaged, written as one weights-only file and read back to check it.

The gate's numbers come from the folds' models (out of fold); the file holds the models trained
on every labeled row (holdout: the base seed's fit) — what the member gates save — with isotonic
maps fitted on all of the recipe's out-of-fold probabilities (every scored row, every seed): the
refit has no unseen rows of its own to calibrate on, and its in-sample probabilities would be
overconfident (scikit-learn's `CalibratedClassifierCV(ensemble=False)` does the same). MiniRocket,
which gate 2 does not save, is refit the same way and kept as plain arrays.
"""

from __future__ import annotations

import time

import numpy as np

from moola import artifacts
from moola.data.validate import labeled_hashes
from moola.deploy import model as deployment
from moola.models.minirocket import MiniRocketArrays
from moola.results import versions
from moola.seeding import seed_everything
from moola.stages import control
from moola.stages.classifiers import input_contract
from moola.stages.context import RunContext
from moola.stages.members import GATE_OF_MEMBER
from moola.stages.protocol import CrossFitted
from moola.training.calibration import fit_calibrator


def calibration_rows(ctx: RunContext, name: str, stage: CrossFitted) -> tuple[np.ndarray, np.ndarray, str]:
    """The probabilities `(m, K)` and labels `(m,)` a member's deployed calibrator is fitted on
    (MiniRocket: its softmaxed ridge scores)."""
    key = "val_score_proba" if name == "minirocket" else None
    if ctx.holdout:  # the saved model is the base seed's fit: its own val rows are unseen
        fit = stage.fits[(ctx.settings.seed, ctx.folds[0].index)]
        proba = fit.extra[key] if key else fit.val_proba
        return proba, ctx.dataset.y[ctx.val], "the saved fit's val rows (split file)"
    ev = stage.evaluation_of(key) if key else stage.evaluation
    folds = {fold.index: fold for fold in ctx.folds}
    seen = np.empty(len(ev.rows), dtype=np.int64)  # labels as each fold's fits saw them (--shuffle-labels)
    for index in np.unique(ev.fold_of):
        rows = ev.fold_of == index
        seen[rows] = ctx.for_fit(folds[int(index)], ctx.settings.seed).dataset.y[ev.rows[rows]]
    return (ev.proba.reshape(-1, ev.n_classes), np.tile(seen, len(ev.seeds)),
            f"the recipe's out-of-fold probabilities ({len(ev.rows)} rows x {len(ev.seeds)} seed(s))")


def saved_fit(ctx: RunContext, name: str, stage: CrossFitted):
    """The member's model as its gate saves it; MiniRocket (gate 2 saves none) refit the same way
    (every labeled row; holdout: the base seed's fit) and turned into plain arrays."""
    if name != "minirocket":
        return stage.final.model
    if ctx.holdout:
        fit = stage.fits[(ctx.settings.seed, ctx.folds[0].index)]
    else:
        seed_everything(ctx.settings.seed)
        fit = control.run_minirocket(ctx.for_fit(ctx.refit_fold(), ctx.settings.seed))
    return MiniRocketArrays.from_classifier(fit.model)


def deployed_ensemble(ctx: RunContext, members: dict) -> deployment.Deployed:
    """`members`: name -> CrossFitted, the approved ones. Their saved fits, each with its calibrator."""
    deployed = []
    for name, stage in members.items():
        proba, y, where = calibration_rows(ctx, name, stage)
        deployed.append(deployment.Member(name, saved_fit(ctx, name, stage), fit_calibrator(proba, y), {
            "gate": GATE_OF_MEMBER[name], "model": stage.name, "calibrated_on": where,
            "trained_on": "the split file's train rows (base seed)" if ctx.holdout else "every labeled row (refit)"}))
    return deployment.Deployed("ensemble", deployed, list(ctx.dataset.classes), input_contract(ctx))


def save_deliverable(ctx: RunContext, members: dict) -> tuple[deployment.Deployed, dict]:
    """Build, save and read back the ensemble file. Returns the in-session predictor and a record
    for the gate line (path, members, the read-back check)."""
    started = time.monotonic()
    deployed = deployed_ensemble(ctx, members)
    labeled = ctx.dataset.labeled.features
    path = ctx.models_dir / artifacts.ENSEMBLE
    metadata = {"model": "calibrated_average", "run_id": ctx.settings.run_id, "profile": ctx.profile.name,
                "protocol": ctx.protocol(), "data_fingerprint": ctx.dataset.fingerprint,
                # every labeled window the gates used (to train, calibrate or score): predict says when it sees them
                "labeled_window_hashes": labeled_hashes(labeled),
                "averaging": "mean of the members' calibrated probabilities", "seed": ctx.settings.seed,
                "versions": versions(), "train_labels_shuffled": ctx.settings.shuffle_labels,
                # rewritten by the results plugin once gate 7 rules (artifacts.mark_gate)
                "gate": {"gate": artifacts.GATE_OF[artifacts.ENSEMBLE], "status": "pending",
                         "run_id": ctx.settings.run_id}}
    deployment.save_ensemble(path, deployed, labeled, metadata)
    loaded = deployment.load_deployed(path)  # refuses a file that does not give the session's numbers
    session, reread = deployment.on_cpu(deployed).predict_proba(labeled), loaded.predict_proba(labeled)
    worst = float(np.abs(session - reread).max())
    if not worst <= 1e-9:  # the same machine, the same CPU kernels: nothing may move
        raise ValueError(f"{path}: read back, it gives the labeled windows probabilities up to {worst:.2g} away from "
                         "the session's models: the file does not hold what was trained; report this as a moola bug")
    return deployed, {"path": str(path), "members": list(members),
                      "max_abs_diff_reloaded": worst, "rows_checked": len(labeled),
                      "save_s": time.monotonic() - started}
