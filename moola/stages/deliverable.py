"""The files `predict` reads: gate 7's ensemble and gate 2's MiniRocket control, each written as
one weights-only file and read back to check it.

Gate 7's deliverable: the approved members' saved fits, each calibrated on its recipe's
out-of-fold predictions, averaged.

The gate's numbers come from the folds' models (out of fold); the file holds the models trained
on every labeled row (holdout: the base seed's fit) — what the member gates save — with isotonic
maps fitted on all of the recipe's out-of-fold probabilities (every scored row, every seed): the
refit has no unseen rows of its own to calibrate on, and its in-sample probabilities would be
overconfident (scikit-learn's `CalibratedClassifierCV(ensemble=False)` does the same). MiniRocket
(gate 2's refit) is kept as plain arrays.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from moola import artifacts
from moola.data.inputs import read_hashes
from moola.data.validate import labeled_hashes
from moola.deploy import model as deployment
from moola.models.minirocket import MiniRocketArrays, score_proba
from moola.results import versions
from moola.stages.classifiers import input_contract
from moola.stages.context import RunContext
from moola.stages.members import GATE_OF_MEMBER
from moola.stages.protocol import CrossFitted
from moola.training.calibration import fit_calibrator

CALIBRATION = ("the recipe's, not the refit's: each member's isotonic maps are fitted on its fold models' "
               "out-of-fold probabilities and applied to the refit, which has no unseen rows of its own; "
               "refit_checks says how far each refit's probabilities drift from its fold models'")
HOLDOUT_CALIBRATION = "each member's isotonic maps are fitted on the saved fit's own val rows (split file)"


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
    """The member's model as its gate saves it (every labeled row; holdout: the base seed's fit);
    MiniRocket as plain arrays."""
    if name == "minirocket":
        return MiniRocketArrays.from_classifier(stage.final.model)
    return stage.final.model


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
    record = save_checked(ctx, deployed, artifacts.ENSEMBLE, "calibrated_average",
                          {"averaging": "mean of the members' calibrated probabilities",
                           "calibration": CALIBRATION if not ctx.holdout else HOLDOUT_CALIBRATION,
                           "refit_checks": {name: stage.final.extra.get("refit_check") for name, stage in members.items()}})
    return deployed, {**record, "save_s": time.monotonic() - started}


def save_control(ctx: RunContext, stage: CrossFitted) -> dict | None:
    """Gate 2's MiniRocket refit (every labeled row; holdout: the base seed's fit) as a one-member
    file `predict` reads: its ridge scores as a softmax, uncalibrated, so its predicted classes are
    exactly the ones the gate scored. Read back and checked against the in-session classifier on
    every labeled window. None when this session does not judge gate 2 (its file is left alone)."""
    if ctx.judged is not None and artifacts.GATE_OF[artifacts.MINIROCKET] not in ctx.judged:
        return None
    started = time.monotonic()
    member = deployment.Member("minirocket", saved_fit(ctx, "minirocket", stage), None, {
        "gate": GATE_OF_MEMBER["minirocket"], "model": stage.name,
        "trained_on": "the split file's train rows (base seed)" if ctx.holdout else "every labeled row (refit)",
        "output": "softmax of the ridge scores (not calibrated probabilities; the argmax is the ridge's class)"})
    deployed = deployment.Deployed("minirocket", [member], list(ctx.dataset.classes), input_contract(ctx))
    record = save_checked(ctx, deployed, artifacts.MINIROCKET, stage.name,
                          {"trained_on": member.info["trained_on"], "scored_by": "the gate line's pooled out-of-fold "
                           "predictions of the same recipe" if not ctx.holdout else "the split file's val rows",
                           "refit_check": stage.final.extra.get("refit_check")})
    session = score_proba(stage.final.model.decision_function(ctx.inputs))  # what the in-session classifier reads
    labeled = ctx.dataset.labeled
    reread = deployment.load_deployed(Path(record["path"]), "minirocket").predict_proba(
        labeled.features, spans=labeled.expansion)
    worst = float(np.abs(session - reread).max())
    if not worst <= 1e-6:  # float32 features either way; the sums may differ in the last bits
        raise ValueError(f"{record['path']}: read back, it scores the labeled windows up to {worst:.2g} away from the "
                         "session's MiniRocket: the file does not hold what gate 2 scored; report this as a moola bug")
    return {**record, "max_abs_diff_vs_session": worst, "save_s": time.monotonic() - started}


def save_checked(ctx: RunContext, deployed: deployment.Deployed, relative: Path, model: str, extra: dict) -> dict:
    """Write `deployed` at `relative` under the run's models folder, read it back and check it gives
    the labeled windows exactly what the session's models give on the CPU."""
    labeled, spans = ctx.dataset.labeled.features, ctx.dataset.labeled.expansion
    path = ctx.models_dir / relative
    metadata = {"model": model, "run_id": ctx.settings.run_id, "profile": ctx.profile.name,
                "protocol": ctx.protocol(), "data_fingerprint": ctx.dataset.fingerprint,
                # every labeled window the gates used (to train, calibrate or score): predict says when it sees them
                "labeled_window_hashes": labeled_hashes(labeled),
                "labeled_read_hashes": read_hashes(labeled, ctx.spec, spans), **extra, "seed": ctx.settings.seed,
                "versions": versions(), "recipe": ctx.recipe, "train_labels_shuffled": ctx.settings.shuffle_labels,
                # rewritten by the results plugin once the gate rules (artifacts.mark_gate)
                "gate": {"gate": artifacts.GATE_OF[relative], "status": "pending", "run_id": ctx.settings.run_id}}
    deployment.save_ensemble(path, deployed, labeled, metadata, spans)
    loaded = deployment.load_deployed(path, deployed.kind)  # refuses a file that does not give the session's numbers
    session = deployment.on_cpu(deployed).predict_proba(labeled, spans=spans)
    reread = loaded.predict_proba(labeled, spans=spans)
    worst = float(np.abs(session - reread).max())
    if not worst <= 1e-9:  # the same machine, the same CPU kernels: nothing may move
        raise ValueError(f"{path}: read back, it gives the labeled windows probabilities up to {worst:.2g} away from "
                         "the session's models: the file does not hold what was trained; report this as a moola bug")
    return {"path": str(path), "members": [m.name for m in deployed.members],
            "max_abs_diff_reloaded": worst, "rows_checked": len(labeled)}
