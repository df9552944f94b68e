"""A stage under the run's protocol: fit once per fold and seed, pool the out-of-fold predictions,
refit on every labeled row for the saved model, and compare two stages on the same rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from moola.evaluation.crossfit import (
    Evaluation,
    chance_bootstrap,
    cross_fit,
    paired_block_bootstrap,
    window_run_length,
)
from moola.evaluation.folds import REFIT, Fold
from moola.parallel.pool import FitPool, Job, one_thread
from moola.seeding import seed_everything
from moola.stages.classifiers import Trained
from moola.stages.context import RunContext
from moola.stages.refit import record_check, refit_check, refit_steps
from moola.training.metrics import classification_metrics

log = logging.getLogger(__name__)


@dataclass
class CrossFitted:
    """One model recipe under the protocol: its pooled out-of-fold evaluation and every fit."""

    name: str
    evaluation: Evaluation
    fits: dict  # (seed, fold index) -> Trained, the fit that scored that fold's rows
    final: Trained | None  # the saved model: refit on all rows (holdout: the base seed's fit)
    majority: Evaluation  # always the fold's train-majority class, on the same rows
    # every fit of the recipe (folds x seeds, and the refit, gate 5's pseudo-samples): wall seconds of
    # the stage on this machine's device, however many fits ran at once (`COST_UNIT`)
    train_time_s: float = 0.0
    ran: dict = field(default_factory=dict)  # how the fits ran (`FitPool.ran`), wall and each fit's seconds summed

    def __repr__(self) -> str:  # pytest prints a failing gate's arguments: one line, not every array
        return (f"CrossFitted({self.name!r}, val_f1 {self.val_f1:.3f}, {len(self.fits)} fits"
                f"{', refit' if self.final is not None else ''}, {self.train_time_s:.1f} s)")

    @property
    def val_f1(self) -> float:
        return self.evaluation.val_f1

    def fit_for(self, ctx: RunContext) -> Trained:
        """This recipe's fit on the same rows and seed as `ctx` (the refit for a refit view)."""
        if ctx.fold.index == REFIT:
            return self.final
        return self.fits[(ctx.seed, ctx.fold.index)]

    def first_fit(self) -> Trained:
        return next(iter(self.fits.values()))

    def evaluation_of(self, key: str) -> Evaluation:
        """An evaluation of another per-fit probability array (e.g. MiniRocket's ridge scores)."""
        ev = self.evaluation
        folds = list(dict.fromkeys(index for _, index in self.fits))
        proba = np.stack([np.concatenate([self.fits[(seed, f)].extra[key] for f in folds]) for seed in ev.seeds])
        return Evaluation(f"{self.name}:{key}", ev.rows, ev.y, ev.fold_of, ev.seeds, proba)


@dataclass(frozen=True)
class Seeded:
    """`fit(view, *args)` with every RNG seeded from the view's seed first: the same fit, the same
    numbers, in this process or a worker's (picklable: a module-level `fit`, or a partial of one)."""

    fit: Callable

    def __call__(self, view: RunContext, *args) -> Trained:
        seed_everything(view.seed)
        return self.fit(view, *args)


def cross_fit_stage(ctx: RunContext, name: str, fit: Callable[..., Trained], *, refit: bool = True,
                    prepare: Callable[[RunContext], object] | None = None,
                    plan: Callable[..., int] | None = None, pool: FitPool | None = None) -> CrossFitted:
    """Run `fit` in every fold and seed's view of `ctx`; `refit`: also fit the saved model on all rows.

    `prepare(view)`, when given, runs here first, once per fit, and its result is `fit`'s second
    argument (gate 5's pseudo-samples, made with gate 4's model of the same fold). `plan(view, *args)`
    gives a fit's optimizer steps per epoch before it trains, so the refit, which matches the scored
    fits' mean, trains beside them instead of after them. `pool` runs the fits several at a time
    (`moola.parallel.pool`); without one they run here, one after another, as a one-worker pool would.
    """
    pool = pool or FitPool(ctx, workers=1)
    started, received = time.monotonic(), pool.received
    jobs = [Job((seed, fold.index), fit, fold, seed, args=prepared(ctx.for_fit(fold, seed), prepare))
            for seed in ctx.seeds for fold in ctx.folds]
    refit_job = None
    if refit and not ctx.holdout:  # every labeled row, at the scored fits' steps per epoch, checked against them
        view = ctx.for_fit(ctx.refit_fold(), ctx.settings.seed)
        planned = round(float(np.mean([plan(job.view(ctx), *job.args) for job in jobs]))) if plan else None
        refit_job = Job(("refit", REFIT), fit, view.fold, ctx.settings.seed, planned, prepared(view, prepare))
    total, finished = len(jobs) + (refit_job is not None), []

    def done(job: Job, trained: Trained) -> None:
        finished.append(job.key)
        if job.key[1] == REFIT:
            said = f"refit on all {len(ctx.dataset.y)} labeled rows"
        else:
            accuracy = float(np.mean(np.asarray(trained.val_proba).argmax(1) == ctx.dataset.y[job.fold.scored]))
            said = f"fold {job.fold.index} seed {job.seed}: accuracy {accuracy:.3f} on {len(job.fold.scored)} scored rows"
        progress(name, len(finished), total, started, said)

    together = jobs + ([refit_job] if refit_job is not None and refit_job.steps_per_epoch is not None else [])
    results = pool.run(together, done)
    fits = {job.key: results[job.key][0] for job in jobs}
    evaluation = cross_fit(name, lambda fold, seed: fits[(seed, fold.index)].val_proba, list(ctx.folds),
                           ctx.dataset.y, ctx.seeds, ctx.n_classes)
    final = None
    if refit and ctx.holdout:  # the split file's rows: the base seed's fit is the saved model
        final = fits[(ctx.settings.seed, ctx.folds[0].index)]
    elif refit_job is not None:
        steps = refit_steps(fits)
        if refit_job.key not in results or refit_job.steps_per_epoch != steps:
            if refit_job.key in results:  # a plan that disagrees with the fits: refit again, right
                log.warning("%s: the refit was planned at %s steps per epoch, the scored fits took %s: refit again",
                            name, refit_job.steps_per_epoch, steps)
            refit_job = replace(refit_job, steps_per_epoch=steps)
            results.update(pool.run([refit_job], done))
        final = results[refit_job.key][0]
        record_check(ctx, final, refit_check(ctx, evaluation, fits, final))
    wall_s = time.monotonic() - started
    ran = {**pool.ran(len(results), pool.received - received), "wall_s": wall_s,
           "fit_seconds": float(sum(seconds for _, seconds in results.values()))}
    return CrossFitted(name, evaluation, fits, final, majority_evaluation(ctx), wall_s, ran)


def prepared(view: RunContext, prepare: Callable | None) -> tuple:
    """`fit`'s extra arguments for `view`: `prepare`'s result, made as a fit is (seeded, one thread)."""
    if prepare is None:
        return ()
    with one_thread():
        return (Seeded(prepare)(view),)


def progress(name: str, done: int, total: int, started: float, said: str) -> None:
    """One live line per fit, with the stage's ETA (each epoch's line is at DEBUG level)."""
    elapsed = time.monotonic() - started
    log.info("%s fit %d/%d, %s (%.0fs so far, eta %.0fs)", name, done, total, said, elapsed,
             elapsed / done * (total - done))


def majority_evaluation(ctx: RunContext) -> Evaluation:
    """The constant predictor: each fold's train-majority class (one-hot) on its scored rows."""
    def fit_predict(fold: Fold, seed: int) -> np.ndarray:
        y = ctx.for_fit(fold, seed).dataset.y
        majority = int(np.bincount(y[fold.train], minlength=ctx.n_classes).argmax())
        return np.tile(np.eye(ctx.n_classes)[majority], (len(fold.scored), 1))

    return cross_fit("majority", fit_predict, list(ctx.folds), ctx.dataset.y, ctx.seeds, ctx.n_classes)


def pooled_metrics(ctx: RunContext, stage: CrossFitted) -> dict:
    """A model gate's numbers: pooled out-of-fold scores (macro F1 averaged over seeds), per fold
    and per seed beside them, and the majority baseline on the same rows."""
    ev = stage.evaluation
    stacked = classification_metrics(np.tile(ev.y, len(ev.seeds)), ev.proba.reshape(-1, ev.n_classes))
    metrics = {**stacked, "val_f1": ev.val_f1, "val_balanced_acc": ev.balanced_acc,
               "per_seed_f1": ev.per_seed_f1, "per_fold_f1": ev.per_fold_f1, "n_scored": len(ev.rows),
               "n_fits": len(stage.fits),
               "pred_classes_per_seed": [int(np.count_nonzero(np.bincount(p, minlength=ev.n_classes))) for p in ev.pred],
               "train_acc": float(np.mean([t.metrics["train_acc"] for t in stage.fits.values()])),
               "majority_f1": stage.majority.val_f1, "confusion": confusion(ev, ctx.dataset.classes),
               "train_time_s": stage.train_time_s, "fits_ran": stage.ran}
    if stage.final is not None and not ctx.holdout:
        metrics["refit"] = {"rows": len(ctx.dataset.y), "train_acc": stage.final.metrics["train_acc"],
                            "check": stage.final.extra.get("refit_check")}
    return metrics


def oof_record(ev: Evaluation) -> dict:
    """The pooled out-of-fold predictions as plain lists, for the results line: `moola select`
    pairs models on the same rows from the file alone (rows: labeled-file positions; y and pred:
    class indices into `data.classes`; pred: one list per seed)."""
    return {"rows": ev.rows.tolist(), "y": ev.y.tolist(), "fold_of": ev.fold_of.tolist(),
            "seeds": list(ev.seeds), "pred": ev.pred.tolist()}


def signal_record(ctx: RunContext, oof: dict, stages: dict) -> dict:
    """What `moola select`'s signal test reads beside a line's `oof` predictions, for a model scored
    outside `cross_fit_stage` (gate 7): the majority baseline on the same rows (when a stage scored
    them) and balanced accuracy against chance with its CI and circular-shift p."""
    rows = np.asarray(oof["rows"])
    proba = np.eye(ctx.n_classes)[np.asarray(oof["pred"], dtype=np.int64)]
    ev = Evaluation("ensemble", rows, np.asarray(oof["y"]), np.asarray(oof["fold_of"]), tuple(oof["seeds"]), proba)
    majority = next((stage.majority.val_f1 for stage in stages.values()
                     if getattr(stage, "majority", None) is not None and np.array_equal(stage.majority.rows, rows)),
                    None)
    length = run_length(ctx) if len(rows) == sum(len(fold.scored) for fold in ctx.folds) else None
    return {"majority_f1": majority, "chance": chance_bootstrap(ev, ctx.profile.thresholds.bootstrap_resamples,
                                                                 ctx.settings.seed, run_length=length)}


# What `moola select` compares: every part in device-seconds, so a resumed or multi-GPU pretraining
# counts what it used, not the wall time of its last part.
COST_UNIT = ("device-seconds: wall seconds x devices; pretraining counts every part of a resumed run and, when "
             "the encoder came from the cache, what it cost on the machine that trained it; a stage's fits count "
             "its wall seconds on the one device they share, however many ran at once (runtime.fit_workers)")


def recipe_cost(**parts: float) -> dict:
    """What a model took to train, counting what it needs (the encoder's pretraining for the LSTMs
    that start from it), in `COST_UNIT`: `moola select` prefers the cheaper of models that score alike."""
    parts = {name.replace("_", " "): float(seconds) for name, seconds in parts.items() if seconds is not None}
    return {"total_s": float(sum(parts.values())), "parts": parts, "unit": COST_UNIT}


def confusion(ev: Evaluation, classes) -> dict:
    """Pooled out-of-fold confusion counts, summed over seeds: rows the true class, columns the predicted."""
    k = ev.n_classes
    counts = np.zeros((k, k), dtype=np.int64)
    for pred in ev.pred:
        np.add.at(counts, (ev.y, pred), 1)
    return {"classes": list(classes), "counts": counts.tolist(), "seeds": len(ev.seeds)}


def spread(candidate: Evaluation, baseline: Evaluation) -> dict:
    """The delta per fold (averaged over seeds) and per seed (pooled over folds): the dots of the
    report's forest plot. Small blocks are noisy: read them, do not judge by them."""
    if not np.array_equal(candidate.fold_of, baseline.fold_of):
        return {}
    return {"per_fold_delta": (np.asarray(candidate.per_fold_f1) - np.asarray(baseline.per_fold_f1)).tolist(),
            "per_seed_delta": (np.asarray(candidate.per_seed_f1) - np.asarray(baseline.per_seed_f1)).tolist()}


def compare(ctx: RunContext, candidate: CrossFitted, baseline: CrossFitted, baseline_gate: str) -> dict:
    """`candidate` minus `baseline` pooled macro F1 over the same rows and seeds, with a 95% CI.

    Holdout resamples single val rows, exactly as before; the folds resample runs of neighbouring
    rows in time order (`paired_block_bootstrap`). `ci_half_width` is the smallest effect this
    comparison could have told from zero.
    """
    thresholds = ctx.profile.thresholds
    delta = paired_block_bootstrap(candidate.evaluation, baseline.evaluation, thresholds.bootstrap_resamples,
                                   ctx.settings.seed, run_length=run_length(ctx))
    return {"baseline_gate": baseline_gate, "baseline_f1": baseline.val_f1, **delta, "policy": thresholds.gate_policy,
            **spread(candidate.evaluation, baseline.evaluation)}


def compare_to_chance(ctx: RunContext, candidate: CrossFitted) -> dict:
    """Balanced accuracy minus chance (1/K) with its CI: the "learned anything?" comparison."""
    return chance_bootstrap(candidate.evaluation, ctx.profile.thresholds.bootstrap_resamples, ctx.settings.seed,
                            run_length=run_length(ctx))


def run_length(ctx: RunContext) -> int:
    """Rows per bootstrap run: whole windows (`crossfit.window_run_length`; rows as before when every
    row is its own window)."""
    scored = sum(len(fold.scored) for fold in ctx.folds)
    return window_run_length(scored, len(ctx.dataset.y) / ctx.dataset.n_windows, ctx.holdout)
