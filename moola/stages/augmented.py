"""Gate 5: pseudo-samples from train rows, then the gate-4 recipe on train + synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moola import artifacts
from moola.data.validate import window_hashes
from moola.stages.classifiers import Trained, run_finetune
from moola.stages.context import RunContext
from moola.training.classifier import predict_proba
from moola.training.pseudo import PseudoSamples, make_pseudo_samples, synthetic_cap

PROVENANCE = Path("models/enhanced_augmented_v1.synthetic.parquet")


def run_augmented(ctx: RunContext, encoder_state: dict, finetuned: Trained) -> tuple[Trained, PseudoSamples]:
    y = ctx.dataset.y
    samples = make_pseudo_samples(
        ctx.windows[ctx.train], y[ctx.train], ctx.windows[np.concatenate([ctx.val, ctx.dataset.split.test])],
        lambda windows: predict_proba(finetuned.model, windows, ctx.device),
        ctx.profile.augment, ohlc=ctx.shared_channels, seed=ctx.seed,
    )
    trained = run_finetune(ctx, encoder_state, samples.windows, samples.y, artifact=artifacts.AUGMENTED)
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
    trained.extra["provenance"] = path
    return trained, samples


def source_rows(ctx: RunContext, samples: PseudoSamples) -> np.ndarray:
    """Labeled-file rows every synthetic row was built from."""
    rows = [int(ctx.train[r]) for p in samples.provenance for r in p["source_rows"]]
    return np.asarray(sorted(set(rows)), dtype=np.int64)


def augment_numbers(ctx: RunContext, trained: Trained, samples: PseudoSamples, finetuned: Trained) -> dict:
    """Everything gate 5's rule compares, checked afresh on the accepted rows."""
    hashes = list(window_hashes(samples.windows))
    real = set(window_hashes(ctx.windows))  # every labeled row: train, val and test
    duplicates = sum(h in real for h in hashes) + (len(hashes) - len(set(hashes)))
    sources = source_rows(ctx, samples)
    foreign = sorted(set(sources.tolist()) - set(ctx.train.tolist()))
    worst = min(samples.ks, key=lambda k: samples.ks[k]["p_value"]) if samples.ks else None
    return {
        "n_synthetic": len(samples.y), "n_train": len(ctx.train), "cap": synthetic_cap(len(ctx.train), ctx.profile.augment),
        "min_quality": float(samples.quality.min()) if len(samples.quality) else None,
        "ks_min_p": samples.ks[worst]["p_value"] if worst else None, "ks_worst": worst,
        "duplicates": int(duplicates), "foreign_sources": foreign,
        "val_f1": trained.metrics["val_f1"], "finetune_f1": finetuned.metrics["val_f1"],
    }
