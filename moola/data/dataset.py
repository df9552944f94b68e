"""Load the data root into one `Dataset`, with every contract problem collected."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moola.config import DataConfig
from moola.data import validate
from moola.data.errors import DataContractError, Problem
from moola.data.parquet import WindowTable, read_windows
from moola.data.split import Split, check_split, read_split

LABELED = Path("processed/train_clean.parquet")
UNLABELED = Path("raw/unlabeled_windows.parquet")
SPLIT = Path("artifacts/splits/v1/fold_0.json")
MIN_BARS = 9  # the smallest window a patch of 7 plus context can mask and still reconstruct


@dataclass(frozen=True)
class Dataset:
    root: Path
    labeled: WindowTable
    unlabeled: WindowTable
    split: Split
    classes: tuple  # class names; y holds their positions
    y: np.ndarray  # (N,) int64
    fingerprint: str  # digest of every array and the split

    @property
    def n_train(self) -> int:
        return len(self.split.train)

    def summary(self) -> dict:
        counts = {name: int((self.y[self.split.train] == i).sum()) for i, name in enumerate(self.classes)}
        return {"fingerprint": self.fingerprint, "n_train": self.n_train, "n_val": len(self.split.val),
                "n_test": len(self.split.test), "n_unlabeled": len(self.unlabeled),
                "classes": list(self.classes), "train_class_counts": counts,
                "window_shape": list(self.labeled.features.shape[1:])}


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str if array.dtype != object else "O", array.shape)).encode())
        digest.update(array.tobytes() if array.dtype != object else "\x1f".join(map(str, array)).encode())
    return digest.hexdigest()[:16]


def check_data(root: Path, config: DataConfig) -> tuple[Dataset | None, list[Problem]]:
    """Read and check everything under `root`; returns the dataset (None if unusable) and all problems."""
    root = Path(root)
    labeled, problems = read_windows(root / LABELED, labeled=True)
    unlabeled, more = read_windows(root / UNLABELED, labeled=False)
    problems += more
    split, more = read_split(root / SPLIT)
    problems += more
    for table in (labeled, unlabeled):
        if table is None:
            continue
        problems += validate.check_ids(table)
        if table.features.shape[1] < MIN_BARS:
            problems.append(Problem(f"{table.path} column 'features'", f"windows of at least {MIN_BARS} bars",
                                    f"{table.features.shape[1]}", "cut longer windows"))
        if config.channels == "ohlc":
            problems += validate.check_ohlc(table)
    if labeled is None or split is None:
        return None, problems
    split_problems = check_split(split, len(labeled), labeled.timestamps)
    problems += split_problems
    if split_problems:
        return None, problems
    problems += validate.check_labels(labeled, split, tuple(config.classes),
                                      config.min_train_per_class, config.min_val_per_class)
    problems += validate.check_leakage(labeled, unlabeled, split)
    if unlabeled is None or problems:
        return None, problems
    classes = tuple(config.classes) if config.classes else tuple(sorted(set(labeled.labels.tolist())))
    y = np.array([classes.index(label) for label in labeled.labels], dtype=np.int64)
    digest = fingerprint(labeled.features, y, unlabeled.features, split.train, split.val, split.test)
    return Dataset(root, labeled, unlabeled, split, classes, y, digest), problems


def load_dataset(root: Path, config: DataConfig) -> Dataset:
    """Like `check_data`, but raises `DataContractError` listing every problem."""
    dataset, problems = check_data(root, config)
    if problems or dataset is None:
        raise DataContractError(problems)
    return dataset
