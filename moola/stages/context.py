"""What every stage needs: settings resolved once per session, the data, its normalised arrays."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from moola.config import EvaluationConfig, Profile, apply_overrides, resolve_profile
from moola.data.dataset import Dataset, load_dataset
from moola.data.demos import DECLARED, cached_demo, check_layout
from moola.data.inputs import InputSpec, model_inputs, resolve_spec
from moola.data.normalize import normalize_windows
from moola.data.overlap import sharing_matrix
from moola.data.ucr import META, dataset_overrides
from moola.evaluation.folds import PROTOCOLS, REFIT, Fold, identical_groups, make_folds
from moola.recipe import make_recipe
from moola.seeding import describe_device, resolve_device
from moola.training.batches import batch_for_steps


@dataclass(frozen=True)
class Settings:
    """The command line, resolved (no data read yet)."""

    profile: Profile
    requested_device: str
    data_root: Path
    artifacts_dir: Path
    results_path: Path
    seed: int = 17
    fresh: bool = False
    demo: str = ""  # an embedded demo's layout (moola.data.demos.LAYOUTS); "" = the data under data_root
    shuffle_labels: bool = False  # negative control: train labels permuted (seeded) before any training
    setup_problems: tuple = ()  # found while resolving (the data folder's own settings file): gate 0 lists them
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __repr__(self) -> str:  # pytest prints a failing gate's arguments: one line, not every profile field
        return (f"Settings(profile={self.profile.name}, device={self.requested_device}, data={self.data_root}, "
                f"seed={self.seed}, run_id={self.run_id})")

    @property
    def device_type(self) -> str:
        """The device kind a run will use ("auto" resolved), without failing when it is missing."""
        return _device_type(self.requested_device)


def _device_type(requested: str) -> str:
    if requested != "auto":
        return requested
    mps = getattr(torch.backends, "mps", None)
    return "cuda" if torch.cuda.is_available() else "mps" if (mps and mps.is_available()) else "cpu"


def resolve_settings(rootdir: Path, *, data_dir: str | None, artifacts_dir: str | None, results: str | None,
                     device: str, profile: str, overrides: list, seed: int, fresh: bool, demo: str | bool,
                     shuffle_labels: bool = False) -> Settings:
    """Turn option values into `Settings`; bad `--profile`/`--set` values raise `ValueError`."""
    rootdir = Path(rootdir)
    demo = check_layout("seed" if demo is True else demo) if demo else ""
    artifacts = Path(artifacts_dir) if artifacts_dir else rootdir / "artifacts"
    if demo and data_dir:
        raise ValueError("--demo and --data-dir both given: --demo uses the embedded demo data; drop one")
    data_root = Path(data_dir) if data_dir else (artifacts / "demo_data" if demo else rootdir / "data")
    # A folder may declare its own channels/classes (python -m moola import-ucr writes one); --set wins.
    resolved = resolve_profile(profile, _device_type(device))
    declared, setup_problems = dataset_overrides(data_root)
    declared = [*DECLARED.get(demo, ()), *declared]  # what the demo's files would declare about themselves
    for item in declared:  # the folder's own file: a bad value is a gate-0 problem, not a usage error
        try:
            resolved = apply_overrides(resolved, [item])
        except ValueError as exc:
            setup_problems.append(f"{data_root / META}: {exc}. Fix: correct or delete that file")
    resolved = apply_overrides(resolved, overrides)
    check_evaluation(resolved.evaluation)
    results_path = Path(results) if results else rootdir / "gated_workflow_results.jsonl"
    return Settings(resolved, device, data_root, artifacts, results_path, seed, fresh, demo, shuffle_labels,
                    setup_problems=tuple(setup_problems))


def check_evaluation(config: EvaluationConfig) -> None:
    """Reject protocol settings that cannot run, naming the option that sets each."""
    if config.cv not in PROTOCOLS:
        raise ValueError(f"--cv: expected one of {', '.join(PROTOCOLS)}, found {config.cv!r}")
    if config.cv != "holdout" and config.folds < 2:
        raise ValueError(f"--folds: expected at least 2 blocks for --cv {config.cv}, found {config.folds}")
    if config.seeds < 1:
        raise ValueError(f"--seeds: expected at least 1, found {config.seeds}")
    if config.embargo < 0:
        raise ValueError(f"--set evaluation.embargo: expected rows >= 0, found {config.embargo}")


def describe_protocol(profile: Profile) -> str:
    """One line: the protocol, its folds and seeds (pytest header, results lines, checkpoints)."""
    config = profile.evaluation
    seeds = f"{config.seeds} seed{'s' if config.seeds > 1 else ''}"
    if config.cv == "holdout":
        return f"holdout (the split file's train/val rows), {seeds}"
    return f"{config.cv}, {config.folds} folds in time order, embargo {config.embargo} row(s), {seeds}"


def data_root(settings: Settings) -> Path:
    """The data root; for --demo, the cached demo dataset (generated on first use)."""
    return cached_demo(settings.data_root, settings.seed, settings.demo) if settings.demo else settings.data_root


@dataclass(frozen=True)
class RunContext:
    """A run's settings, device and data; `for_fit` narrows it to one fit (a fold's rows, a seed)."""

    settings: Settings
    device: torch.device
    dataset: Dataset  # labels as given (a fit's view holds its fold's permuted train labels under --shuffle-labels)
    windows: np.ndarray  # (N, T, C) normalised labeled windows: what the encoder and the pool filter read
    inputs: np.ndarray  # (N, V, C[+1]) what the classifiers read (`moola.data.inputs`: decision point, span)
    spec: InputSpec  # how `inputs` were made (saved with every classifier; predict makes them alike)
    folds: tuple = ()  # the protocol's folds (holdout: one, the split file's)
    fold: Fold | None = None  # the fit this view trains: its train rows and scored rows
    fit_seed: int | None = None
    judged: frozenset | None = None  # gates this session runs (None: all); a model whose gate is not among them is not saved
    # A refit's optimizer steps per epoch, matched to the scored fits' (None: the config's batch size).
    steps_per_epoch: int | None = None

    def __repr__(self) -> str:
        fold = "all folds" if self.fold is None else f"fold {self.fold.index}"
        return f"RunContext({self.settings!r}, {fold}, seed {self.seed}, {len(self.dataset.y)} labeled rows)"

    @property
    def profile(self) -> Profile:
        return self.settings.profile

    @property
    def seed(self) -> int:
        return self.settings.seed if self.fit_seed is None else self.fit_seed

    @property
    def seeds(self) -> tuple:
        """Seeds every trained model is repeated with: base … base + S − 1."""
        return tuple(range(self.settings.seed, self.settings.seed + self.profile.evaluation.seeds))

    @property
    def holdout(self) -> bool:
        return self.profile.evaluation.cv == "holdout"

    @property
    def train(self) -> np.ndarray:
        return self.fold.train if self.fold is not None else self.dataset.split.train

    @property
    def val(self) -> np.ndarray:
        """The rows this fit is scored on (holdout: the split's val rows)."""
        return self.fold.scored if self.fold is not None else self.dataset.split.val

    @property
    def test(self) -> np.ndarray:
        return test_rows(self.dataset, self.profile)

    @property
    def held_out(self) -> np.ndarray:
        """Every labeled row this fit does not train on (scored, purged or unused)."""
        return np.setdiff1d(np.arange(len(self.dataset.y)), self.train)

    @property
    def saves_models(self) -> bool:
        """This fit writes the deliverable: the refit on all rows, or holdout's base-seed fit."""
        if self.fold is None:
            return False
        if self.holdout:
            return self.seed == self.settings.seed
        return self.fold.index == REFIT

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def recipe(self) -> dict:
        """What this run's numbers are computed with (`moola.recipe`): recorded in every line and file."""
        return make_recipe(self.profile, self.settings.seed, self.dataset.fingerprint, self.device.type,
                           self.settings.shuffle_labels)

    @property
    def shared_channels(self) -> bool:
        return self.profile.data.channels == "ohlc"

    @property
    def models_dir(self) -> Path:
        """Where trained classifiers go: a negative-control run never overwrites the real ones."""
        artifacts = self.settings.artifacts_dir
        return artifacts / "negative_control" if self.settings.shuffle_labels else artifacts

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        return normalize_windows(raw, shared_channels=self.shared_channels)

    def for_fit(self, fold: Fold, seed: int) -> RunContext:
        """The view one fit trains in: `fold`'s rows, `seed`, and under --shuffle-labels the fold's
        train labels permuted (seeded by the run's seed and the fold, the same for every seed)."""
        dataset = self.dataset
        if self.settings.shuffle_labels:
            # holdout: seeded by the run's seed alone, the permutation of the runs made before folds
            permutation = self.settings.seed if self.holdout else (self.settings.seed, fold.index + 1)
            dataset = shuffle_labels(dataset, fold.train, permutation)
        return dataclasses.replace(self, dataset=dataset, fold=fold, fit_seed=seed)

    def batch_size(self, configured: int, n_rows: int) -> int:
        """The batch size this fit trains at: the configured one, or for a refit the one that cuts
        its rows into the scored fits' steps per epoch (`protocol.refit_steps`)."""
        if self.steps_per_epoch is None:
            return configured
        # never one row a batch (BatchNorm), even when the scored fits took as many steps as the refit has rows
        return max(2, batch_for_steps(n_rows, self.steps_per_epoch))

    def refit_fold(self) -> Fold:
        """The saved models' fit: every labeled row trains it (scored in-sample, for the record only)."""
        rows = np.arange(len(self.dataset.y))
        return Fold(REFIT, rows, rows, np.zeros(0, dtype=np.int64))

    def protocol(self) -> dict:
        """The protocol as recorded in lines and checkpoints."""
        config = self.profile.evaluation
        scored = np.concatenate([fold.scored for fold in self.folds])
        return {"cv": config.cv, "folds": config.folds, "scored_folds": len(self.folds), "seeds": list(self.seeds),
                "embargo": config.embargo,
                "gate_policy": self.profile.thresholds.gate_policy,
                "description": describe_protocol(self.profile), "n_scored": len(scored),
                "train_rows_per_fold": [len(fold.train) for fold in self.folds],
                "purged_per_fold": [len(fold.purged) for fold in self.folds]}

    def line_context(self) -> dict:
        """Run-wide fields of every results line."""
        labels = (f"shuffled: every fold's train labels permuted with seed {self.settings.seed} (a negative control)"
                  if self.settings.shuffle_labels else "as given")
        return {"profile": self.profile.name, "device": describe_device(self.device)["device"],
                "seed": self.settings.seed,
                "data": {**self.dataset.summary(), "train_labels": labels, "inputs": self.spec.record()},
                "evaluation": self.protocol(), "recipe": self.recipe}


def shuffle_labels(dataset: Dataset, rows: np.ndarray, seed) -> Dataset:
    """The negative control: `rows`' labels permuted among themselves (seeded), every other row untouched.

    Class counts stay as they were; any signal linking a train window to its label is gone, so a
    sound suite must find no gain beyond noise (gate 4 or earlier fails).
    """
    y = dataset.y.copy()
    y[rows] = np.random.default_rng(seed).permutation(y[rows])
    return dataclasses.replace(dataset, y=y)


def test_rows(dataset: Dataset, profile: Profile) -> np.ndarray:
    """Test rows of the split file: used by the holdout protocol only (the folds score every row)."""
    return dataset.split.test if profile.evaluation.cv == "holdout" else np.zeros(0, dtype=np.int64)


def scored_rows(folds, test: np.ndarray) -> np.ndarray:
    """Every labeled row some gate scores: the folds' scored rows and (holdout) the test rows."""
    return np.unique(np.concatenate([*(fold.scored for fold in folds), test]).astype(np.int64))


def protocol_folds(dataset: Dataset, windows: np.ndarray, profile: Profile) -> tuple[tuple, list]:
    """The protocol's folds and every reason they cannot train (a fold's train rows missing a class)."""
    config = profile.evaluation
    if config.cv == "holdout":
        split = dataset.split
        folds = (Fold(0, split.train, split.val, np.zeros(0, dtype=np.int64)),)
    else:
        timestamps = dataset.labeled.timestamps
        span = None
        if timestamps is not None:
            span = np.timedelta64(windows.shape[1] * profile.data.bar_seconds, "s")
        try:
            folds = tuple(make_folds(len(dataset.y), config.cv, config.folds, embargo=config.embargo,
                                     timestamps=timestamps, span=span, groups=identical_groups(windows),
                                     linked=sharing_matrix(dataset.labeled.features)))
        except ValueError as exc:
            return (), [f"evaluation --cv {config.cv} --folds {config.folds}: {exc}"]
    problems = []
    needed = profile.data.min_train_per_class
    for fold in folds:
        counts = np.bincount(dataset.y[fold.train], minlength=len(dataset.classes))
        if counts.min() < needed:
            problems.append(
                f"evaluation --cv {config.cv}: fold {fold.index} trains on {len(fold.train)} rows with class counts "
                f"{dict(zip(dataset.classes, counts.tolist()))}, expected >= {needed} of every class "
                f"(rows {fold.scored.min()}–{fold.scored.max()} scored, {len(fold.purged)} purged); "
                f"use fewer --folds{'' if config.cv == 'blocked' else ', --cv blocked'}, or --cv holdout")
    return folds, problems


def build_context(settings: Settings, dataset: Dataset | None = None, judged: frozenset | None = None) -> RunContext:
    """Resolve the device and load + normalise the data (raises with every data problem).

    `dataset`: already loaded and checked for these settings (the pytest header reads it once).
    `judged`: the gates this session runs (a narrowed run never overwrites another gate's model).
    """
    if settings.setup_problems:  # gate 0 lists them; a run that skips gate 0 must not go on without them
        raise ValueError("; ".join(settings.setup_problems))
    device = resolve_device(settings.requested_device)
    dataset = dataset or load_dataset(data_root(settings), settings.profile.data, settings.profile.evaluation.cv)
    shared = settings.profile.data.channels == "ohlc"
    windows = normalize_windows(dataset.labeled.features, shared_channels=shared)
    folds, problems = protocol_folds(dataset, windows, settings.profile)
    if problems:
        raise ValueError("; ".join(problems))
    spec = input_spec(dataset, settings.profile)
    inputs = model_inputs(dataset.labeled.features, spec, dataset.labeled.expansion)
    return RunContext(settings, device, dataset, windows, inputs, spec, folds, judged=judged)


def input_spec(dataset: Dataset, profile: Profile) -> InputSpec:
    """The classifiers' inputs for this data (`inputs.resolve_spec`: span-aware where the spans vary;
    an explicit `data.span_bars` without spans is a gate-0 problem, `labels.check_spans`)."""
    return resolve_spec(profile.data, dataset.labeled.expansion)
