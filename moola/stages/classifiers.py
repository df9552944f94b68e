"""The LSTM classifiers of gates 1, 4, 5 and 6: build, fit in phases, evaluate, save."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moola import artifacts, models
from moola.config import FinetuneConfig, to_dict
from moola.data.inputs import read_hashes
from moola.data.validate import labeled_hashes
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.models.simple_lstm import SimpleLSTM
from moola.results import versions
from moola.stages.context import RunContext
from moola.training.batches import batch_bounds
from moola.training.classifier import (
    Augmentation,
    FitOptions,
    Phase,
    child_groups,
    fit_classifier,
    lstm_layer_groups,
    predict_proba,
)
from moola.training.metrics import classification_metrics, majority_baseline
from moola.training.regularizers import L2SP

HEAD = ("attention", "norm", "classifier")  # EnhancedSimpleLSTM's newly initialised modules
REFIT_STEPS = ("the scored fits' mean optimizer steps per epoch: the same epochs, phases and SWA snapshots, "
               "the batch size scaled to the refit's rows")

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """A fitted classifier and its numbers on the val rows."""

    name: str
    model: nn.Module | None
    val_proba: np.ndarray  # (n_val, K)
    metrics: dict
    test_proba: np.ndarray | None = None  # (n_test, K) when the split has test rows
    steps: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    artifact: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def val_pred(self) -> np.ndarray:
        return self.val_proba.argmax(axis=1)


def evaluate(ctx: RunContext, name: str, model: nn.Module, train_windows: np.ndarray, train_y: np.ndarray,
             **kwargs) -> Trained:
    """Metrics on the fit's scored rows, train accuracy and the majority baseline for a fitted model."""
    y = ctx.dataset.y
    val_proba = predict_proba(model, ctx.inputs[ctx.val], ctx.device)
    metrics = classification_metrics(y[ctx.val], val_proba)
    metrics["train_acc"] = float((predict_proba(model, train_windows, ctx.device).argmax(1) == train_y).mean())
    metrics.update(majority_baseline(y[ctx.train], y[ctx.val], ctx.n_classes))
    test_proba = predict_proba(model, ctx.inputs[ctx.test], ctx.device) if len(ctx.test) else None
    return Trained(name, model, val_proba, metrics, test_proba, **kwargs)


def enhanced_model(ctx: RunContext, encoder_state: dict | None, dropout: float) -> tuple[EnhancedSimpleLSTM, dict]:
    config = ctx.profile.pretrain
    torch.manual_seed(ctx.seed)
    # the encoder reads the price channels it was pretrained on; the span channel (if any) steers the pooling
    model = EnhancedSimpleLSTM(ctx.windows.shape[2], ctx.n_classes, config.hidden_size, config.num_layers,
                               dropout=dropout, span_channel=ctx.spec.span_channel)
    match = artifacts.load_encoder_weights(model, encoder_state) if encoder_state is not None else {}
    return model, match


def run_smoke(ctx: RunContext, encoder_state: dict | None) -> Trained:
    """Gate 1: EnhancedSimpleLSTM, encoder frozen, head only, no augmentation."""
    config = ctx.profile.smoke
    model, match = enhanced_model(ctx, encoder_state, config.dropout)
    train_x, train_y = ctx.inputs[ctx.train], ctx.dataset.y[ctx.train]
    options = FitOptions(config.batch_size, {name: config.lr for name in (*HEAD, "encoder")})
    fit = fit_classifier(model, train_x, train_y, child_groups(model), [Phase("smoke", config.epochs, HEAD)],
                         options, ctx.device, ctx.seed, ctx.n_classes)
    return evaluate(ctx, "enhanced_simple_lstm", model, train_x, train_y, steps=fit.steps, history=fit.history,
                    extra=match)


def overfit_check(ctx: RunContext, encoder_state: dict | None) -> dict:
    """Can the smoke pipeline learn at all? Fit its trainable part on a few train rows, full batch.

    Saturated inputs (raw prices), a detached graph or an everything-frozen model cannot reach
    the target, whatever the data; a working pipeline memorises 16 rows in a handful of steps.
    """
    config = ctx.profile.smoke
    y = ctx.dataset.y
    rows, skipped = overfit_rows(ctx, max(1, config.overfit_rows // ctx.n_classes))
    model, _ = enhanced_model(ctx, encoder_state, config.dropout)
    options = FitOptions(len(rows), {name: config.overfit_lr for name in (*HEAD, "encoder")}, warmup_fraction=0.0)
    fit = fit_classifier(model, ctx.inputs[rows], y[rows], child_groups(model),
                         [Phase("overfit", config.overfit_steps, HEAD)], options, ctx.device, ctx.seed, ctx.n_classes)
    accuracy = float((predict_proba(model, ctx.inputs[rows], ctx.device).argmax(1) == y[rows]).mean())
    first = next((i + 1 for i, h in enumerate(fit.history) if h["train_acc"] >= config.overfit_target_acc), None)
    log.info("overfit check: train accuracy %.3f on %d rows after %d full-batch steps (target %.2f%s)", accuracy,
             len(rows), config.overfit_steps, config.overfit_target_acc,
             f", first reached at step {first}" if first else ", never reached")
    return {"overfit_rows": len(rows), "overfit_steps": config.overfit_steps, "overfit_train_acc": accuracy,
            "overfit_steps_to_target": first, "overfit_target_acc": config.overfit_target_acc,
            "overfit_rows_skipped": skipped}


def overfit_rows(ctx: RunContext, per_class: int) -> tuple[np.ndarray, int]:
    """Up to `per_class` train rows of each class, one per distinct input, none from an input whose
    train rows carry two classes (one input with two answers: nothing could memorise it). An input
    is a window, or a window and its span when the classifiers read spans (`ctx.spec.needs_spans`).
    Returns (rows, train rows passed over for that reason)."""
    y, train = ctx.dataset.y, ctx.train
    audit = ctx.dataset.audit
    window_of = audit.window_of if audit is not None else np.arange(len(y))
    spans = ctx.dataset.labeled.expansion
    if ctx.spec.needs_spans and spans is not None:  # one id per (window, span)
        _, window_of = np.unique(np.column_stack([window_of, spans]), axis=0, return_inverse=True)
        window_of = window_of.reshape(-1)
    mixed = {w for w in np.unique(window_of[train]) if len(np.unique(y[train][window_of[train] == w])) > 1}
    chosen, used = [], set()
    for k in range(ctx.n_classes):
        taken = 0
        for row in train[y[train] == k]:
            window = int(window_of[row])
            if taken == per_class or window in used or window in mixed:
                continue
            chosen.append(row)
            used.add(window)
            taken += 1
    skipped = int(np.isin(window_of[train], list(mixed)).sum())
    return np.asarray(chosen, dtype=np.int64), skipped


def finetune_groups(model: EnhancedSimpleLSTM) -> dict:
    """Encoder layers (bottom to top) and the new head modules."""
    groups = lstm_layer_groups(model.encoder.lstm, "encoder")
    groups.update({name: list(getattr(model, name).parameters()) for name in HEAD})
    return groups


def finetune_schedule(config: FinetuneConfig, num_layers: int) -> tuple[list, dict]:
    """Phases and per-group base LRs: head only, then LSTM layers unfrozen top first.

    With 2 layers, 60 epochs, 3 frozen, unfreeze_every 3: "frozen" 3 epochs (head), "unfreeze_l1"
    3 epochs (head + top layer), "unfreeze_l0" 54 epochs (everything). LRs: head 1e-3, top layer
    1e-3 * 0.3, the layer below 1e-3 * 0.3^2.

    Gate 5 trains on train + synthetic rows with this same schedule: the same phases, the same
    SWA share and snapshot count (one per epoch). Each epoch then passes over more rows, so gate 5
    takes (train + synthetic) / train times gate 4's optimizer steps (EMA, counted in steps, spans
    fewer epochs); the gate line records both (`step_budget`). Scaling gate 5's epochs down
    to gate 4's step budget instead would shrink its phases (3/3/19 -> 1/1/6 epochs) and SWA
    snapshots (6 -> 2): another averaging recipe, not just added rows.
    """
    layers = [f"encoder.l{k}" for k in reversed(range(num_layers))]  # top first
    lrs = {name: config.head_lr for name in HEAD}
    lrs.update({layer: config.head_lr * config.layer_lr_decay ** (depth + 1) for depth, layer in enumerate(layers)})
    frozen = max(1, config.frozen_epochs)
    step = max(1, config.unfreeze_every)
    remaining = max(len(layers), config.epochs - frozen)
    phases, trainable = [Phase("frozen", frozen, HEAD)], list(HEAD)
    for i, layer in enumerate(layers):
        trainable = [layer, *trainable]
        epochs = step if i < len(layers) - 1 else remaining - step * (len(layers) - 1)
        phases.append(Phase(f"unfreeze_{layer.split('.')[-1]}", max(1, epochs), tuple(trainable)))
    return phases, lrs


def finetune_options(config: FinetuneConfig, lrs: dict, total_epochs: int) -> FitOptions:
    if config.select not in ("raw", "ema", "swa"):
        raise ValueError(f"finetune.select: expected raw, ema or swa, found {config.select!r}")
    return FitOptions(
        config.batch_size, lrs, config.grad_clip,
        augmentation=Augmentation(config.jitter_sigma, config.scale_sigma, config.time_warp_sigma, config.aug_prob),
        loss=config.loss, focal_gamma=config.focal_gamma, ema_half_life=config.ema_half_life,
        # at least one epoch, and one epoch before averaging starts (a share near 1 of a short schedule)
        swa_epochs=min(max(1, round(total_epochs * config.swa_fraction)), total_epochs - 1) if config.swa_fraction > 0 else 0,
        swa_lr_factor=config.swa_lr_factor)


def run_finetune(ctx: RunContext, encoder_state: dict, extra_windows: np.ndarray | None = None,
                 extra_y: np.ndarray | None = None, name: str = "enhanced_simple_lstm",
                 artifact: Path = artifacts.FINETUNED) -> Trained:
    """Gates 4 and 5: fine-tune from the pretrained encoder (progressive unfreezing, L2-SP, EMA, SWA)."""
    config = ctx.profile.finetune
    started = time.monotonic()
    model, match = enhanced_model(ctx, encoder_state, config.dropout)
    train_x, train_y = ctx.inputs[ctx.train], ctx.dataset.y[ctx.train]
    if extra_windows is not None and len(extra_windows):
        train_x, train_y = np.concatenate([train_x, extra_windows]), np.concatenate([train_y, extra_y])
    phases, lrs = finetune_schedule(config, model.encoder.num_layers)
    options = finetune_options(config, lrs, sum(p.epochs for p in phases))
    options = dataclasses.replace(options, batch_size=ctx.batch_size(config.batch_size, len(train_x)),
                                  augmentation=dataclasses.replace(options.augmentation,
                                                                   marker_channels=int(ctx.spec.span_channel)))
    l2sp = L2SP.from_modules(model.encoder, [getattr(model, m) for m in HEAD], config.l2sp_alpha, config.l2sp_beta)
    fit = fit_classifier(model, train_x, train_y, finetune_groups(model), phases, options, ctx.device, ctx.seed,
                         ctx.n_classes, l2sp)
    candidates = {"raw": fit.model, "ema": fit.ema, "swa": fit.swa}
    weights = {}
    for kind, candidate in candidates.items():
        if candidate is not None:
            proba = predict_proba(candidate, ctx.inputs[ctx.val], ctx.device)
            weights[kind] = classification_metrics(ctx.dataset.y[ctx.val], proba)["val_f1"]
    chosen = candidates[config.select]
    if chosen is None:
        raise ValueError(f"finetune.select={config.select!r} but that average was not kept "
                         "(set finetune.ema_half_life or finetune.swa_fraction above 0)")
    chosen = getattr(chosen, "module", chosen)  # AveragedModel wraps the averaged copy in .module
    trained = evaluate(ctx, name, chosen, ctx.inputs[ctx.train], ctx.dataset.y[ctx.train], steps=fit.steps,
                       history=fit.history,
                       extra={**match, "phase_lrs": fit.lrs, "trainable": fit.trainable, "n_fit_rows": len(train_x),
                              **fit_shape(options.batch_size, fit),
                              "l2sp_penalty": fit.l2sp_penalty, "swa_bn_refreshed": fit.swa_bn_refreshed,
                              "weights_used": config.select, "val_f1_by_weights": weights})
    if ctx.saves_models:
        trained.artifact = save_model(ctx, trained, artifact, to_dict(config), time.monotonic() - started)
    return trained


def run_baseline(ctx: RunContext) -> Trained:
    """Gate 6: SimpleLSTM from scratch, every module training at one LR."""
    config = ctx.profile.baseline
    started = time.monotonic()
    torch.manual_seed(ctx.seed)
    model = SimpleLSTM(ctx.inputs.shape[2], ctx.n_classes, config.hidden_size)  # the span channel is one more input
    train_x, train_y = ctx.inputs[ctx.train], ctx.dataset.y[ctx.train]
    options = FitOptions(ctx.batch_size(config.batch_size, len(train_x)), {"lstm": config.lr, "head": config.lr},
                         config.grad_clip, config.weight_decay)
    fit = fit_classifier(model, train_x, train_y, child_groups(model), [Phase("scratch", config.epochs, ("lstm", "head"))],
                         options, ctx.device, ctx.seed, ctx.n_classes)
    trained = evaluate(ctx, "simple_lstm", model, train_x, train_y, steps=fit.steps, history=fit.history,
                       extra=fit_shape(options.batch_size, fit))
    if ctx.saves_models:
        trained.artifact = save_model(ctx, trained, artifacts.BASELINE, to_dict(config), time.monotonic() - started)
    return trained


def planned_steps(ctx: RunContext, configured: int, rows: int) -> int:
    """Optimizer steps per epoch a fit on `rows` rows will take (the batches `fit_classifier` cuts),
    known before it trains: the refit, matched to the scored fits' mean, then trains beside them."""
    return len(batch_bounds(rows, max(1, min(ctx.batch_size(configured, rows), rows))))


def finetune_steps(ctx: RunContext, samples=None) -> int:
    """A gate-4 fit's steps per epoch; gate 5's with its pseudo-samples (`augmented.pseudo_samples`)."""
    extra = 0 if samples is None else len(samples.y)
    return planned_steps(ctx, ctx.profile.finetune.batch_size, len(ctx.train) + extra)


def baseline_steps(ctx: RunContext) -> int:
    return planned_steps(ctx, ctx.profile.baseline.batch_size, len(ctx.train))


def fit_shape(batch_size: int, fit) -> dict:
    """How a fit was cut into optimizer steps: what a refit matches to the scored fits."""
    epochs = len(fit.history)
    return {"batch_size": batch_size, "epochs": epochs, "total_steps": int(sum(fit.steps.values())),
            "steps_per_epoch": int(sum(fit.steps.values()) // max(1, epochs))}


def input_contract(ctx: RunContext) -> dict:
    """What a window must look like, and the transform applied to it, for this model to read it."""
    return {"window_shape": list(ctx.windows.shape[1:]), "channels": ctx.profile.data.channels,
            "normalisation": "per-window z-score over the bars read, " + (
                "one mean and std shared by the channels (OHLC)" if ctx.shared_channels else "per channel"),
            **ctx.spec.record()}


def save_model(ctx: RunContext, trained: Trained, relative: Path, config: dict, duration_s: float) -> Path | None:
    """The deliverable of a recipe: which rows trained it, and which protocol scored the recipe.

    Not saved (None) when this session does not run the model's gate (`-k ensemble` refits gate 4's
    model for gate 7): the file at that path keeps the model its gate judged.
    """
    if ctx.judged is not None and artifacts.GATE_OF[relative] not in ctx.judged:
        return None
    trained_on = {"rows": len(ctx.train), "which": "every labeled row (refit)" if not ctx.holdout else
                  "the split file's train rows", "protocol": ctx.protocol(),
                  "scored_by": "pooled out-of-fold predictions of the same recipe (the gate line)"
                  if not ctx.holdout else "the split file's val rows"}
    # A refit has no rows left to score: its gate numbers are the recipe's, in the results line.
    metrics = trained.metrics if ctx.holdout else {"train_acc": trained.metrics["train_acc"]}
    metadata = {"model": trained.name, "config": config, "metrics": metrics, "trained_on": trained_on,
                "steps": trained.steps, "architecture": models.architecture(trained.model),
                "schedule": {**{key: trained.extra.get(key) for key in ("batch_size", "epochs", "total_steps",
                                                                        "steps_per_epoch")},
                             "steps_matched_to": REFIT_STEPS if ctx.steps_per_epoch is not None else
                             "the configured batch size"},
                "input": input_contract(ctx),
                "classes": list(ctx.dataset.classes), "data_fingerprint": ctx.dataset.fingerprint,
                "labeled_window_hashes": labeled_hashes(ctx.dataset.labeled.features),
                # what the model read of each labeled row: predict's seen/unseen split, cut windows included
                "labeled_read_hashes": read_hashes(ctx.dataset.labeled.features, ctx.spec, ctx.dataset.labeled.expansion),
                "profile": ctx.profile.name, "seed": ctx.seed, "duration_s": duration_s, "versions": versions(),
                "recipe": ctx.recipe,
                "train_labels_shuffled": ctx.settings.shuffle_labels,
                # The gate's verdict comes after the save: the results plugin rewrites this entry
                # (artifacts.mark_gate). "pending" left here means the run stopped before the gate ruled.
                "gate": {"gate": artifacts.GATE_OF[relative], "status": "pending", "run_id": ctx.settings.run_id}}
    return artifacts.save_checkpoint(ctx.models_dir / relative, trained.model.state_dict(), metadata)
