"""The LSTM classifiers of gates 1, 4, 5 and 6: build, fit in phases, evaluate, save."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moola import artifacts
from moola.config import to_dict
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.models.simple_lstm import SimpleLSTM
from moola.results import versions
from moola.stages.context import RunContext
from moola.training.classifier import Augmentation, Phase, fit_classifier, predict_proba
from moola.training.metrics import classification_metrics, majority_baseline, paired_bootstrap_delta

HEAD = ("attention", "norm", "classifier")  # EnhancedSimpleLSTM's newly initialised modules


@dataclass
class Trained:
    """A fitted classifier and its numbers on the val rows."""

    name: str
    model: nn.Module | None
    val_proba: np.ndarray  # (n_val, K)
    metrics: dict
    steps: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    artifact: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def val_pred(self) -> np.ndarray:
        return self.val_proba.argmax(axis=1)


def evaluate(ctx: RunContext, name: str, model: nn.Module, train_windows: np.ndarray, train_y: np.ndarray,
             **kwargs) -> Trained:
    """Val metrics, train accuracy and the majority baseline for a fitted model."""
    y = ctx.dataset.y
    val_proba = predict_proba(model, ctx.windows[ctx.val], ctx.device)
    metrics = classification_metrics(y[ctx.val], val_proba)
    metrics["train_acc"] = float((predict_proba(model, train_windows, ctx.device).argmax(1) == train_y).mean())
    metrics.update(majority_baseline(y[ctx.train], y[ctx.val], ctx.n_classes))
    return Trained(name, model, val_proba, metrics, **kwargs)


def compare(ctx: RunContext, candidate: Trained, baseline: Trained, baseline_gate: str) -> dict:
    """`candidate` minus `baseline` macro F1 on the same val rows, with its paired bootstrap CI."""
    delta = paired_bootstrap_delta(ctx.dataset.y[ctx.val], candidate.val_pred, baseline.val_pred, ctx.n_classes,
                                   ctx.profile.thresholds.bootstrap_resamples, ctx.seed)
    return {"baseline_gate": baseline_gate, "baseline_f1": baseline.metrics["val_f1"], **delta}


def enhanced_model(ctx: RunContext, encoder_state: dict | None, dropout: float) -> tuple[EnhancedSimpleLSTM, dict]:
    config = ctx.profile.pretrain
    torch.manual_seed(ctx.seed)
    model = EnhancedSimpleLSTM(ctx.windows.shape[2], ctx.n_classes, config.hidden_size, config.num_layers,
                               dropout=dropout)
    match = artifacts.load_encoder_weights(model, encoder_state) if encoder_state is not None else {}
    return model, match


def run_smoke(ctx: RunContext, encoder_state: dict | None) -> Trained:
    """Gate 1: EnhancedSimpleLSTM, encoder frozen, head only, no augmentation."""
    config = ctx.profile.smoke
    model, match = enhanced_model(ctx, encoder_state, config.dropout)
    train_x, train_y = ctx.windows[ctx.train], ctx.dataset.y[ctx.train]
    fit = fit_classifier(model, train_x, train_y, [Phase("smoke", config.epochs, {m: config.lr for m in HEAD})],
                         config.batch_size, ctx.device, ctx.seed, n_classes=ctx.n_classes)
    return evaluate(ctx, "enhanced_simple_lstm", model, train_x, train_y, steps=fit.steps, history=fit.history,
                    extra=match)


def finetune_phases(ctx: RunContext, n_rows: int) -> list:
    """Frozen then unfrozen epochs, scaled so every run takes gate 4's optimizer steps.

    Gate 5 trains on train + synthetic rows; at a fixed epoch count 78 + 156 rows would take
    three times gate 4's steps, and the comparison would mix "more data" with "more training".
    Scaling epochs by n_train / n_rows keeps the step budget equal (to rounding).
    """
    config = ctx.profile.finetune
    scale = len(ctx.train) / n_rows
    frozen = max(1, round(config.frozen_epochs * scale))
    unfrozen = max(1, round((config.epochs - config.frozen_epochs) * scale))
    head = {m: config.head_lr for m in HEAD}
    return [Phase("frozen", frozen, head), Phase("unfrozen", unfrozen, {"encoder": config.encoder_lr, **head})]


def run_finetune(ctx: RunContext, encoder_state: dict, extra_windows: np.ndarray | None = None,
                 extra_y: np.ndarray | None = None, name: str = "enhanced_simple_lstm",
                 artifact: Path = artifacts.FINETUNED) -> Trained:
    """Gates 4 and 5: two-phase fine-tune from the pretrained encoder, with augmentation."""
    config = ctx.profile.finetune
    started = time.monotonic()
    model, match = enhanced_model(ctx, encoder_state, config.dropout)
    train_x, train_y = ctx.windows[ctx.train], ctx.dataset.y[ctx.train]
    if extra_windows is not None and len(extra_windows):
        train_x, train_y = np.concatenate([train_x, extra_windows]), np.concatenate([train_y, extra_y])
    augmentation = Augmentation(config.jitter_sigma, config.scale_sigma, config.time_warp_sigma, config.aug_prob)
    fit = fit_classifier(model, train_x, train_y, finetune_phases(ctx, len(train_x)), config.batch_size, ctx.device, ctx.seed,
                         config.weight_decay, config.grad_clip, augmentation, ctx.n_classes)
    trained = evaluate(ctx, name, model, ctx.windows[ctx.train], ctx.dataset.y[ctx.train], steps=fit.steps,
                       history=fit.history, extra={**match, "phase_lrs": fit.lrs, "n_fit_rows": len(train_x)})
    trained.artifact = save_model(ctx, trained, artifact, to_dict(config), time.monotonic() - started)
    return trained


def run_baseline(ctx: RunContext) -> Trained:
    """Gate 6: SimpleLSTM from scratch, every module training at one LR."""
    config = ctx.profile.baseline
    started = time.monotonic()
    torch.manual_seed(ctx.seed)
    model = SimpleLSTM(ctx.windows.shape[2], ctx.n_classes, config.hidden_size)
    train_x, train_y = ctx.windows[ctx.train], ctx.dataset.y[ctx.train]
    fit = fit_classifier(model, train_x, train_y, [Phase("scratch", config.epochs, {"lstm": config.lr, "head": config.lr})],
                         config.batch_size, ctx.device, ctx.seed, config.weight_decay, config.grad_clip,
                         n_classes=ctx.n_classes)
    trained = evaluate(ctx, "simple_lstm", model, train_x, train_y, steps=fit.steps, history=fit.history)
    trained.artifact = save_model(ctx, trained, artifacts.BASELINE, to_dict(config), time.monotonic() - started)
    return trained


def save_model(ctx: RunContext, trained: Trained, relative: Path, config: dict, duration_s: float) -> Path:
    metadata = {"model": trained.name, "config": config, "metrics": trained.metrics, "steps": trained.steps,
                "classes": list(ctx.dataset.classes), "data_fingerprint": ctx.dataset.fingerprint,
                "profile": ctx.profile.name, "seed": ctx.seed, "duration_s": duration_s, "versions": versions()}
    return artifacts.save_checkpoint(ctx.settings.artifacts_dir / relative, trained.model.state_dict(), metadata)
