"""What every stage needs: settings resolved once per session, the data, its normalised arrays."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from moola.config import Profile, apply_overrides, resolve_profile
from moola.data.dataset import Dataset, load_dataset
from moola.data.demo import cached_demo
from moola.data.normalize import normalize_windows
from moola.data.ucr import dataset_overrides
from moola.seeding import describe_device, resolve_device


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
    demo: bool = False
    shuffle_labels: bool = False  # negative control: train labels permuted (seeded) before any training
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

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
                     device: str, profile: str, overrides: list, seed: int, fresh: bool, demo: bool,
                     shuffle_labels: bool = False) -> Settings:
    """Turn option values into `Settings`; bad `--profile`/`--set` values raise `ValueError`."""
    rootdir = Path(rootdir)
    artifacts = Path(artifacts_dir) if artifacts_dir else rootdir / "artifacts"
    if demo and data_dir:
        raise ValueError("--demo and --data-dir both given: --demo uses the embedded demo data; drop one")
    data_root = Path(data_dir) if data_dir else (artifacts / "demo_data" if demo else rootdir / "data")
    # A folder may declare its own channels/classes (python -m moola import-ucr writes one); --set wins.
    overrides = [*dataset_overrides(data_root), *overrides]
    resolved = apply_overrides(resolve_profile(profile, _device_type(device)), overrides)
    if resolved.thresholds.gate_policy not in ("point", "ci"):
        raise ValueError(f"gate policy: expected point or ci, found {resolved.thresholds.gate_policy!r}")
    results_path = Path(results) if results else rootdir / "gated_workflow_results.jsonl"
    return Settings(resolved, device, data_root, artifacts, results_path, seed, fresh, demo, shuffle_labels)


def data_root(settings: Settings) -> Path:
    """The data root; for --demo, the cached demo dataset (generated on first use)."""
    return cached_demo(settings.data_root, settings.seed) if settings.demo else settings.data_root


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    device: torch.device
    dataset: Dataset
    windows: np.ndarray  # (N, T, C) normalised labeled windows

    @property
    def profile(self) -> Profile:
        return self.settings.profile

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def train(self) -> np.ndarray:
        return self.dataset.split.train

    @property
    def val(self) -> np.ndarray:
        return self.dataset.split.val

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

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

    def line_context(self) -> dict:
        """Run-wide fields of every results line."""
        labels = (f"shuffled: train labels permuted with seed {self.seed} (a negative control)"
                  if self.settings.shuffle_labels else "as given")
        return {"profile": self.profile.name, "device": describe_device(self.device)["device"],
                "seed": self.seed, "data": {**self.dataset.summary(), "train_labels": labels}}


def shuffle_train_labels(dataset: Dataset, seed: int) -> Dataset:
    """The negative control: the train rows' labels permuted (seeded), val and test rows untouched.

    Class counts stay as they were; any signal linking a train window to its label is gone, so a
    sound suite must find no gain beyond noise (gate 4 or earlier fails).
    """
    y = dataset.y.copy()
    train = dataset.split.train
    y[train] = np.random.default_rng(seed).permutation(y[train])
    return dataclasses.replace(dataset, y=y)


def build_context(settings: Settings, dataset: Dataset | None = None) -> RunContext:
    """Resolve the device and load + normalise the data (raises with every data problem).

    `dataset`: already loaded and checked for these settings (the pytest header reads it once).
    """
    device = resolve_device(settings.requested_device)
    dataset = dataset or load_dataset(data_root(settings), settings.profile.data)
    if settings.shuffle_labels:
        dataset = shuffle_train_labels(dataset, settings.seed)
    shared = settings.profile.data.channels == "ohlc"
    return RunContext(settings, device, dataset, normalize_windows(dataset.labeled.features, shared_channels=shared))
