"""Settings: one frozen dataclass per concern, composed into a `Profile`.

`full` carries the user's numbers (a GPU run); `quick` runs the same algorithms with fewer
epochs and a subsample of the unlabeled pool so a 2-core CPU finishes in minutes.
`apply_overrides` is the only way to change a field from outside (`--set key=value`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    channels: str = "ohlc"  # "ohlc" (C = 4, OHLC checks on) or "generic" (any C, checks off)
    classes: tuple = ("consolidation", "retracement")  # expected label set; () = take from data
    min_train_per_class: int = 2  # a class with fewer train rows cannot be learned or probed
    min_val_per_class: int = 1  # a class absent from val makes macro F1 meaningless
    # Duration of one bar: with timestamps, two windows overlap when their starts are closer than
    # T bars (folds purge such neighbours; the pretraining pool drops windows overlapping a scored row).
    bar_seconds: int = 60
    # Bars every labeled span must lie in, inclusive `first,last`; () = not declared. The user's
    # layout: 30,74 (0-29 past context, 30-74 the prediction window, 75-104 the "future outcome").
    prediction_bars: tuple = ()
    # The decision point: classifiers read bars 0..visible_bars-1 only, normalised on them (0 = the
    # whole window, as the seed). The user's layout: 75 leaves out the 30 "future outcome" bars a
    # live prediction would not have. Pretraining and the pool filter always read whole windows.
    visible_bars: int = 0
    # Classifiers read each labeled row's span (expansion_start..expansion_end) as one more 0/1
    # channel, when the labeled spans vary between rows; off: they read the bars alone (two rows of
    # one window on different spans are then one input with two answers).
    span_input: bool = True
    # A span-aligned view: classifiers read the span_bars bars ending at each labeled span's last
    # bar, so patterns line up and no bar after the span is read (replaces visible_bars). -1 = auto
    # when the spans vary and visible_bars is 0: the first of prediction_bars + 1 (31 on the user's
    # layout), else the earliest span end + 1; 0 = off (whole windows). Chosen by evidence on the
    # user-layout demo (docs/gates.md).
    span_bars: int = -1


@dataclass(frozen=True)
class PretrainConfig:
    hidden_size: int = 128  # per direction; encoder output is 2 * hidden_size
    num_layers: int = 2
    mask_strategy: str = "patch"  # "random" | "block" | "patch"
    mask_ratio: float = 0.15  # fraction of time steps masked per window
    patch_size: int = 7  # bars per masked patch
    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.1  # held-out share of the unlabeled pool for early stopping
    patience: int = 8  # epochs without val improvement before stopping
    max_unlabeled: int = 0  # windows used; 0 = the whole pool
    anti_collapse_weight: float = 0.0  # weight of the low-variance penalty on encoder outputs; 0 = off
    grad_clip: float = 1.0  # max global L2 norm of the gradient (unscaled first under fp16)
    # CUDA only: fp16 autocast + GradScaler (cuDNN runs the LSTM in fp16 under any autocast).
    # Off by default: the full profile's ~1,200 fp32 steps take minutes on one GPU, and fp32 needs
    # no loss scaling; `python -m moola.bench --device cuda` measures fp16 against it. CPU: fp32.
    mixed_precision: bool = False
    # Processes torchrun starts for pretraining, one device each (a GPU on CUDA, a CPU share
    # otherwise); 1 = in this process. Not a hyperparameter: N ranks split each global batch of
    # `batch_size` rows and compute what one process computes (docs/runpod.md "Several GPUs"),
    # so it is not part of the encoder's fingerprint.
    devices: int = 1


@dataclass(frozen=True)
class SmokeConfig:
    epochs: int = 3
    batch_size: int = 8  # 78 rows / 8 = 10 optimizer steps an epoch, 30 in all
    lr: float = 1e-3
    dropout: float = 0.1
    overfit_rows: int = 16  # train rows (balanced) the smoke model must be able to memorise
    overfit_steps: int = 100  # full-batch optimizer steps allowed for it
    overfit_lr: float = 3e-3  # constant LR of the overfit check
    overfit_target_acc: float = 0.9  # on those rows, eval mode: 15 of 16 right; a pipeline that cannot learn stays near 0.5


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 60
    frozen_epochs: int = 3  # phase 1: encoder frozen, head only
    unfreeze_every: int = 3  # epochs between unfreezing the next-lower LSTM layer (top layer first)
    batch_size: int = 8  # 78 rows / 8 = 10 optimizer steps an epoch (600 over 60 epochs)
    head_lr: float = 1e-3  # attention, norm and classifier
    layer_lr_decay: float = 0.3  # top LSTM layer at head_lr * 0.3, each deeper layer 0.3x the one above
    l2sp_alpha: float = 1e-2  # pull of the encoder toward its pretrained weights (L2-SP)
    l2sp_beta: float = 1e-4  # plain L2 on the new head's weight matrices (replaces weight decay)
    grad_clip: float = 1.0  # max global L2 norm of the gradient
    dropout: float = 0.1
    loss: str = "weighted_ce"  # "weighted_ce" | "focal"; class weights from the train counts
    focal_gamma: float = 2.0
    ema_half_life: int = 50  # optimizer steps (decay 0.5 ** (1 / 50) = 0.986 per step)
    swa_fraction: float = 0.25  # last share of epochs averaged by SWA (one snapshot per epoch)
    swa_lr_factor: float = 0.5  # SWALR anneals each group to this share of its base LR
    select: str = "swa"  # weights the gate judges and saves: raw | ema | swa (fixed, never chosen on val)
    jitter_sigma: float = 0.05  # std of additive noise, in normalised units
    scale_sigma: float = 0.1  # std of the multiplicative factor around 1
    time_warp_sigma: float = 0.2  # std of the random warp knots around speed 1
    aug_prob: float = 0.5  # chance each augmentation is applied to one sample


@dataclass(frozen=True)
class AugmentConfig:
    ratio: float = 2.0  # max synthetic rows per real train row
    max_synthetic: int = 210  # absolute cap on synthetic rows
    quality_threshold: float = 0.85  # quality in [0, 1]; below it a candidate is dropped
    ks_alpha: float = 0.1  # the gate fails when a KS p-value falls below this
    tolerance: float = 0.02  # val_f1 may drop this much below gate 4 (2 pp)
    # Every fit needs at least this many synthetic rows per real train row (and at least one): with
    # fewer, the augmented fit is nearly gate 4's fit and "holds val_f1" says nothing about augmentation.
    min_ratio: float = 0.25
    candidates_per_row: int = 4  # generated per train row before filtering


@dataclass(frozen=True)
class BaselineConfig:
    hidden_size: int = 32
    epochs: int = 60
    batch_size: int = 8  # the same optimizer steps per epoch as gate 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0


@dataclass(frozen=True)
class EnsembleConfig:
    calibration_folds: int = 5  # cross-fitting folds on val when there is no test split
    # Models averaged. The candidates "finetuned" (gate 4) and "augmented" (gate 5) join when they
    # passed their own gate this session; the comparison models "baseline" (SimpleLSTM, gate 6) and
    # "minirocket" (gate 2's control, its calibrated ridge scores) when listed, and only beside an
    # approved candidate. Fixed before the run, never chosen on the rows the ensemble is scored on.
    members: tuple = ("finetuned", "augmented")
    tolerance: float = 0.01  # ensemble may be this much below the best member (1 pp)


@dataclass(frozen=True)
class ThresholdConfig:
    encoder_match_ratio: float = 0.8  # share of encoder tensors that must load by name+shape
    probe_balanced_acc: float = 0.55  # chance is 0.5 for two classes, whatever the class ratio
    reconstruction_ratio: float = 0.8  # masked MSE on real train windows / predicting their mean; ~1 = learned nothing
    bootstrap_resamples: int = 1000  # paired bootstrap of scored rows for F1 deltas
    # "ci": a comparison passes only when its 95% CI clears the rule (docs/evaluation.md "Gate policy");
    # "point": the seed's point comparisons on the same pooled numbers.
    gate_policy: str = "ci"


@dataclass(frozen=True)
class EvaluationConfig:
    """How much data stands behind each gate number (docs/evaluation.md)."""

    cv: str = "blocked"  # "holdout" (the split file) | "blocked" | "walk-forward"
    folds: int = 5  # K contiguous blocks of the labeled rows in time order (ignored by holdout)
    seeds: int = 3  # every trained model repeated with seeds base … base + S − 1
    embargo: int = 1  # rows purged on each side of a scored block (neighbouring windows share bars)


@dataclass(frozen=True)
class RuntimeConfig:
    # CUDA: cuDNN deterministic kernels, no cuDNN benchmark, torch deterministic algorithms
    # (warn-only), cuBLAS workspace :4096:8, so a rerun gives the same metrics: at 20 val rows one
    # flipped row is 5 pp. Off: faster kernels, reruns may differ. CPU runs are deterministic anyway.
    deterministic: bool = True
    # Processes that run a stage's fits at once (`moola.parallel.pool`), each fit on one CPU thread;
    # 0 = auto: one per CPU core (at most 8) on the CPU, 4 sharing the GPU on CUDA (at most the cores
    # less one), 1 on MPS. Not a hyperparameter: a fit gives the same numbers however many run beside it.
    fit_workers: int = 0


@dataclass(frozen=True)
class Profile:
    name: str = "full"
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def full_profile() -> Profile:
    """The user's numbers, for one GPU."""
    return Profile(name="full")


def quick_profile() -> Profile:
    """Same algorithms as `full`, sized for a 2-core CPU: fewer epochs, 4,096 unlabeled windows."""
    return Profile(
        name="quick",
        pretrain=PretrainConfig(epochs=8, batch_size=256, max_unlabeled=4096, patience=3),
        finetune=FinetuneConfig(epochs=25),
        baseline=BaselineConfig(epochs=25),
        evaluation=EvaluationConfig(seeds=1),
    )


PROFILES = {"full": full_profile, "quick": quick_profile}


def resolve_profile(name: str, device_type: str) -> Profile:
    """Return the named profile; "auto" is `full` on CUDA and `quick` elsewhere."""
    if name == "auto":
        name = "full" if device_type == "cuda" else "quick"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of auto, {', '.join(PROFILES)}")
    return PROFILES[name]()


def valid_keys(profile: Profile) -> list[str]:
    """All `section.field` keys that `apply_overrides` accepts."""
    keys = []
    for section in dataclasses.fields(profile):
        value = getattr(profile, section.name)
        if dataclasses.is_dataclass(value):
            keys.extend(f"{section.name}.{f.name}" for f in dataclasses.fields(value))
    return keys


# Every enumerated setting and its allowed values, checked when the run starts (a typo must not
# pass gate 0 and fail after pretraining, nor silently switch a check off: data.channels=OHLC).
CHOICES = {
    "data.channels": ("ohlc", "generic"),
    "pretrain.mask_strategy": ("random", "block", "patch"),  # moola.training.masking.STRATEGIES
    "finetune.loss": ("weighted_ce", "focal"),  # moola.training.classifier.LOSSES
    "finetune.select": ("raw", "ema", "swa"),
    "thresholds.gate_policy": ("point", "ci"),
    "evaluation.cv": ("holdout", "blocked", "walk-forward"),  # moola.evaluation.folds.PROTOCOLS
}
ENSEMBLE_MEMBERS = ("finetuned", "augmented", "baseline", "minirocket")  # ensemble.members' allowed values
RENAMED = {"ensemble.include_minirocket": "ensemble.members=finetuned,augmented,minirocket"}


def check_choices(profile: Profile) -> None:
    """Raise `ValueError` naming the key and the allowed values for any enumerated setting out of range."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(profile, section), name)
        if value not in allowed:
            hint = f" (did you mean {str(value).lower()!r}?)" if str(value).lower() in allowed else ""
            raise ValueError(f"--set {key}={value}: expected one of {', '.join(allowed)}, found {value!r}{hint}")
    members = profile.ensemble.members
    unknown = [m for m in members if m not in ENSEMBLE_MEMBERS]
    if unknown or not members or len(set(members)) != len(members):
        raise ValueError(f"--set ensemble.members={','.join(members)}: expected a comma-separated list of distinct "
                         f"names from {', '.join(ENSEMBLE_MEMBERS)}, found {list(members)!r}")
    if not {"finetuned", "augmented"} & set(members):
        raise ValueError(f"--set ensemble.members={','.join(members)}: expected finetuned or augmented among them "
                         "(baseline and minirocket are comparison models, joined to a candidate, never delivered alone)")
    finetune = profile.finetune  # the weights gate 4 judges must exist (else it fails after pretraining)
    for key, value, ok, expected in (
            ("finetune.swa_fraction", finetune.swa_fraction, 0 <= finetune.swa_fraction < 1, "a share in [0, 1)"),
            ("finetune.ema_half_life", finetune.ema_half_life,
             math.isfinite(finetune.ema_half_life) and finetune.ema_half_life >= 0, "finite steps >= 0 (0 = off)"),
            ("finetune.swa_lr_factor", finetune.swa_lr_factor, 0 < finetune.swa_lr_factor <= 1, "a share in (0, 1]"),
            # gate 5 needs this many synthetic rows per train row, and the cap allows at most `ratio`
            ("pretrain.devices", profile.pretrain.devices, profile.pretrain.devices >= 1, "a number of processes >= 1"),
            ("data.span_bars", profile.data.span_bars,
             profile.data.span_bars in (-1, 0) or (profile.data.span_bars >= 9 and not profile.data.visible_bars),
             ("-1 (auto), 0 (off) or a number of bars >= 9 with data.visible_bars 0 (the view ends at the span: "
              "one decision point or the other)")),
            ("data.visible_bars", profile.data.visible_bars,
             profile.data.visible_bars == 0 or profile.data.visible_bars >= 9,
             "0 (the whole window) or a number of bars >= 9 (MiniRocket's shortest series)"),
            ("augment.min_ratio", profile.augment.min_ratio, 0 < profile.augment.min_ratio <= profile.augment.ratio,
             f"a share in (0, augment.ratio = {profile.augment.ratio}] (else gate 5 could never pass)")):
        if not ok:
            raise ValueError(f"--set {key}={value}: expected {expected}, found {value!r}")
    needs = {"swa": ("finetune.swa_fraction", finetune.swa_fraction), "ema": ("finetune.ema_half_life", finetune.ema_half_life)}
    if finetune.select in needs and not needs[finetune.select][1] > 0:
        key, value = needs[finetune.select]
        raise ValueError(f"--set {key}={value} with finetune.select={finetune.select}: expected {key} > 0 (the "
                         f"{finetune.select.upper()} weights gate 4 judges would never be kept); raise it, or "
                         "choose another finetune.select")


INT_PAIRS = ("data.prediction_bars",)  # tuple settings holding two integers


def _parse(raw: str, annotation, key: str):
    target = {"int": int, "float": float, "str": str, "bool": bool, "tuple": tuple}[str(annotation)]
    if target is bool:
        lowered = raw.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--set {key}={raw}: expected a boolean (true/false), found {raw!r}")
        return lowered in ("true", "1", "yes")
    if target is tuple:
        parts = tuple(part.strip() for part in raw.split(",") if part.strip())
        if key in INT_PAIRS:
            if not (len(parts) == 2 and all(p.lstrip("-").isdigit() for p in parts) and int(parts[0]) <= int(parts[1])) \
                    and parts:
                raise ValueError(f"--set {key}={raw}: expected two bar numbers FIRST,LAST with FIRST <= LAST "
                                 f"(e.g. 30,74), or nothing to leave it undeclared, found {raw!r}")
            return tuple(int(p) for p in parts)
        return parts
    try:
        return target(raw.strip() if target is str else raw)
    except ValueError:
        raise ValueError(
            f"--set {key}={raw}: expected {target.__name__}, found {raw!r}"
        ) from None


def apply_overrides(profile: Profile, overrides: typing.Iterable[str]) -> Profile:
    """Return `profile` with each "section.field=value" applied; unknown keys are rejected."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key in RENAMED:
            raise ValueError(f"--set {item!r}: {key} was replaced; use --set {RENAMED[key]}")
        if not sep or key not in valid_keys(profile):
            raise ValueError(
                f"--set {item!r}: unknown key {key!r}. Valid keys: {', '.join(valid_keys(profile))}"
            )
        section_name, field_name = key.split(".")
        section = getattr(profile, section_name)
        annotation = {f.name: f.type for f in dataclasses.fields(section)}[field_name]
        value = _parse(raw, annotation, key)
        profile = dataclasses.replace(
            profile, **{section_name: dataclasses.replace(section, **{field_name: value})}
        )
    check_choices(profile)
    return profile


def to_dict(config) -> dict:
    """Plain-data view of a config dataclass (for results lines and checkpoints)."""
    return dataclasses.asdict(config)
