"""Gate 5: pseudo-samples from each fit's train rows, then the gate-4 recipe on train + synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moola import artifacts
from moola.data.validate import window_hashes
from moola.stages.classifiers import Trained, run_finetune
from moola.stages.context import RunContext
from moola.stages.protocol import CrossFitted, compare
from moola.stages.rules import no_worse_failures, synthetic_failures
from moola.training.classifier import predict_proba
from moola.training.pseudo import (
    PseudoSamples,
    make_pseudo_samples,
    statistic_quantiles,
    synthetic_cap,
    synthetic_minimum,
)

PROVENANCE = Path("models/enhanced_augmented_v1.synthetic.parquet")


def pseudo_samples(ctx: RunContext, finetuned: CrossFitted) -> PseudoSamples:
    """One fit's pseudo-samples, their labels checked by the gate-4 model of the same fold and seed."""
    return samples_checked_by(ctx, finetuned.fit_for(ctx).model)


def samples_checked_by(ctx: RunContext, model) -> PseudoSamples:
    """Pseudo-samples from the fit's train rows whose labels `model` confirms (`make_pseudo_samples`)."""
    return make_pseudo_samples(
        ctx.inputs[ctx.train], ctx.dataset.y[ctx.train], ctx.inputs[ctx.held_out],
        lambda windows: predict_proba(model, windows, ctx.device),
        ctx.profile.augment, ohlc=ctx.shared_channels, seed=ctx.seed, marker_channels=int(ctx.spec.span_channel),
    )


def run_augmented(ctx: RunContext, samples: PseudoSamples, encoder_state: dict) -> Trained:
    """One fit of gate 5: the gate-4 recipe on train + synthetic rows (`pseudo_samples`).
    The samples ride along in `trained.extra["samples"]`."""
    trained = run_finetune(ctx, encoder_state, samples.windows, samples.y, artifact=artifacts.AUGMENTED)
    trained.extra["samples"] = samples
    if ctx.saves_models and trained.artifact is not None:  # beside the model it describes, never alone
        trained.extra["provenance"] = write_provenance(ctx, samples)
    return trained


def write_provenance(ctx: RunContext, samples: PseudoSamples) -> Path:
    """Beside the saved augmented model: every synthetic row's sources, generator and quality."""
    path = ctx.models_dir / PROVENANCE
    path.parent.mkdir(parents=True, exist_ok=True)
    train_rows = ctx.train
    pd.DataFrame({
        # source rows as positions in the labeled file, so a user can look them up
        "source_rows": [[int(train_rows[r]) for r in p["source_rows"]] for p in samples.provenance],
        "generator": [p["generator"] for p in samples.provenance],
        "params": [str(p["params"]) for p in samples.provenance],
        "quality": [p["quality"] for p in samples.provenance],
        "label": [ctx.dataset.classes[p["label"]] for p in samples.provenance],
    }).to_parquet(path)
    return path


def source_rows(ctx: RunContext, samples: PseudoSamples) -> np.ndarray:
    """Labeled-file rows every synthetic row was built from."""
    rows = [int(ctx.train[r]) for p in samples.provenance for r in p["source_rows"]]
    return np.asarray(sorted(set(rows)), dtype=np.int64)


def synthetic_numbers(ctx: RunContext, samples: PseudoSamples) -> dict:
    """Everything gate 5's synthetic-row rules compare for one fit, checked afresh on the accepted rows."""
    hashes = list(window_hashes(samples.windows))
    real = set(window_hashes(ctx.inputs))  # every labeled row as the model reads it: train, scored and purged
    duplicates = sum(h in real for h in hashes) + (len(hashes) - len(set(hashes)))
    sources = source_rows(ctx, samples)
    foreign = sorted(set(sources.tolist()) - set(ctx.train.tolist()))
    worst = min(samples.ks, key=lambda k: samples.ks[k]["p_value"]) if samples.ks else None
    return {
        "n_synthetic": len(samples.y), "n_train": len(ctx.train), "cap": synthetic_cap(len(ctx.train), ctx.profile.augment),
        "minimum": synthetic_minimum(len(ctx.train), ctx.profile.augment), "filter_counts": dict(samples.counts),
        "min_quality": float(samples.quality.min()) if len(samples.quality) else None,
        "ks_min_p": samples.ks[worst]["p_value"] if worst else None, "ks_worst": worst,
        "duplicates": int(duplicates), "foreign_sources": foreign,
    }


def fit_views(ctx: RunContext, stage: CrossFitted) -> list:
    """(the fit's view of `ctx`, its Trained) for every fit of `stage`, the refit last."""
    folds = {fold.index: fold for fold in ctx.folds}
    views = [(ctx.for_fit(folds[index], seed), trained) for (seed, index), trained in stage.fits.items()]
    if stage.final is not None and not ctx.holdout:
        views.append((ctx.for_fit(ctx.refit_fold(), ctx.settings.seed), stage.final))
    return views


def augment_verdict(ctx: RunContext, augmented: CrossFitted, finetuned: CrossFitted) -> tuple[list, dict]:
    """Gate 5's failures and numbers. Every fit's synthetic rows obey the structural rules (cap,
    quality, no duplicates, train sources only); the KS test is applied to the saved model's
    synthetic rows (one test, as before: across K folds one of K tests at α = 0.1 would fail a
    sound generator ~41% of the time); the F1 rule compares the pooled out-of-fold numbers."""
    config, failures, per_fit, saved = ctx.profile.augment, [], [], None
    for view, trained in fit_views(ctx, augmented):
        numbers = synthetic_numbers(view, trained.extra["samples"])
        where = "saved model" if view.saves_models else f"fold {view.fold.index} seed {view.seed}"
        failures += [f"{where}: {failure}" for failure in synthetic_failures(numbers, config, view.saves_models)]
        per_fit.append({"fit": where, **numbers})
        if view.saves_models:
            samples = trained.extra["samples"]
            n_values = view.windows.shape[2]  # price channels (the span channel is no statistic)
            saved = (numbers, samples, statistic_quantiles(samples.windows[..., :n_values],
                                                           view.inputs[view.train][..., :n_values]))
    comparison = compare(ctx, augmented, finetuned, "4_finetune_enhanced")
    failures += [f"{failure}: augmentation degrades real scored rows" for failure in no_worse_failures(
        augmented.val_f1, finetuned.val_f1, "gate-4", config.tolerance, ctx.profile.thresholds.gate_policy,
        comparison["delta_ci95"])]
    return failures, {"comparison": comparison, "per_fit": per_fit, "saved": saved}


def step_budget(finetuned: CrossFitted, augmented: CrossFitted) -> dict:
    """Gate 5 trains gate 4's schedule (epochs, phases, SWA snapshots) over train + synthetic rows:
    more optimizer steps per epoch. Both budgets, mean over the scored fits, for the gate line."""
    def mean_steps(stage: CrossFitted) -> float:
        return float(np.mean([fit.extra["total_steps"] for fit in stage.fits.values()]))  # classifiers.fit_shape

    gate4, gate5 = mean_steps(finetuned), mean_steps(augmented)
    return {"gate4_steps": gate4, "gate5_steps": gate5, "ratio": gate5 / gate4 if gate4 else None,
            "epochs": len(augmented.first_fit().history),
            "why": "gate 4's epochs, phases and SWA snapshots over train + synthetic rows: each epoch has more "
                   "batches, so gate 5 takes this many times gate 4's optimizer steps"}
