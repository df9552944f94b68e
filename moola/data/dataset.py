"""Load the data root into one `Dataset`, with every contract problem collected."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moola.config import DataConfig
from moola.data import labels as label_checks
from moola.data import validate
from moola.data.errors import DataContractError, Problem
from moola.data.normalize import normalize_windows
from moola.data.parquet import WindowTable, read_windows
from moola.data.split import Split, check_split, check_temporal, read_split

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
    audit: label_checks.LabelAudit | None = None  # rows as labels of windows: conflicts, distinct windows
    notes: tuple = ()  # what gate 0 reports without refusing (the split file's leaks under the folds)

    def __repr__(self) -> str:
        return f"Dataset({self.root}, {len(self.y)} labeled, {len(self.unlabeled)} unlabeled, {self.fingerprint})"

    @property
    def n_train(self) -> int:
        return len(self.split.train)

    @property
    def n_windows(self) -> int:
        """Distinct windows behind the labeled rows (rows of one window count once): the effective n."""
        return self.audit.n_windows if self.audit is not None else len(self.y)

    @property
    def labeled_rows(self) -> str:
        """`labeled_fingerprint` of this dataset."""
        return labeled_fingerprint(self)

    def summary(self) -> dict:
        counts = {name: int((self.y[self.split.train] == i).sum()) for i, name in enumerate(self.classes)}
        return {"fingerprint": self.fingerprint, "labeled_rows": self.labeled_rows, "n_labeled": len(self.y),
                "n_windows": self.n_windows,
                "n_train": self.n_train, "n_val": len(self.split.val),
                "n_test": len(self.split.test), "n_unlabeled": len(self.unlabeled),
                "classes": list(self.classes), "train_class_counts": counts,
                "window_shape": list(self.labeled.features.shape[1:])}


def labeled_fingerprint(dataset: Dataset) -> str:
    """Digest of what every comparison is scored on: the labeled windows, their labels (as class
    names) and spans; not the pool or the split, so a re-cut pool or a new split file is the same
    rows (`moola.iterate.family` counts the configurations tried on them)."""
    spans = () if dataset.labeled.expansion is None else (dataset.labeled.expansion,)
    return fingerprint(dataset.labeled.features, np.asarray(dataset.labeled.labels, dtype=object), *spans)


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str if array.dtype != object else "O", array.shape)).encode())
        digest.update(array.tobytes() if array.dtype != object else "\x1f".join(map(str, array)).encode())
    return digest.hexdigest()[:16]


def check_data(root: Path, config: DataConfig, protocol: str = "holdout") -> tuple[Dataset | None, list[Problem]]:
    """Read and check everything under `root`; returns the dataset (None if unusable) and all problems.

    `protocol` (`--cv`): what the leakage checks judge by (`validate.check_leakage`). Never raises on what the files hold: an unforeseen failure is one more problem, so gate 0
    always writes its line.
    """
    root = Path(root)
    try:
        return _check_data(root, config, protocol)
    except Exception as exc:  # noqa: BLE001 -- the contract's promise: a gate-0 answer, never a traceback
        return None, [Problem(str(root), "files moola can check", f"{type(exc).__name__}: {exc} while checking them",
                              "compare the files with python -m moola demo-data OUT; if they match, report this")]


def misplaced(root: Path, expected: Path) -> list[Problem]:
    """A file expected at `root/expected` that sits elsewhere: at the data root or one folder down,
    or (a root named processed/raw/artifacts holding none of it) under the parent's layout:
    `--data-dir` one level too deep."""
    found = [p for p in (root / expected.name, *root.glob(f"*/{expected.name}")) if p.is_file()]
    for parent in list(root.parents)[:2]:
        target = parent / expected
        # the file found is the parent's own (DATA/processed given for DATA), or nothing else is there
        if target.is_file() and (any(f.resolve() == target.resolve() for f in found)
                                 or (not found and root.name in ("processed", "raw", "artifacts"))):
            return [Problem(str(root / expected), "the file at this path",
                            f"{target}: --data-dir points inside the data root", f"pass --data-dir {parent}")]
    return [Problem(str(root / expected), "the file at this path", f"{found[0].relative_to(root)} under the data root",
                    f"move it: mkdir -p {root / expected.parent} && mv {found[0]} {root / expected}")] if found else []


def csv_instead(path: Path) -> Problem | None:
    """A missing parquet file with a CSV of the same name beside it: moola reads parquet only (a CSV
    cell cannot hold a window's bars as a typed list), and the fix is one line."""
    path = Path(path)
    if path.suffix.lower() == ".csv" and path.is_file():  # the CSV itself was given
        csv, path, found = path, path.with_suffix(".parquet"), "a CSV file"
    else:
        csv = next((c for c in (path.with_suffix(".csv"), path.with_suffix(".CSV")) if c.is_file()), None)
        if path.exists() or csv is None:
            return None
        found = f"{csv.name} beside it"
    return Problem(str(csv if found == "a CSV file" else path), "a parquet file (moola does not read CSV)", found,
                   f"convert it once: python -c \"import json, pandas as pd; d = pd.read_csv('{csv}'); "
                   f"d['features'] = d['features'].map(json.loads); d.to_parquet('{path}')\" (features as JSON lists "
                   "of bars; add d['timestamp'] = pd.to_datetime(d['timestamp']) when the file has that column)")


def transposed(table: WindowTable, config: DataConfig) -> Problem | None:
    """Windows stored bars-last (C × T): one clear problem instead of three confusing ones."""
    _, n_bars, n_channels = table.features.shape
    looks = (n_bars == 4 and n_channels != 4) if config.channels == "ohlc" else (n_bars < MIN_BARS <= n_channels)
    if not looks:
        return None
    return Problem(f"{table.path} column 'features'", "each window as T bars × C values (e.g. 105 × 4)",
                   f"{n_bars} × {n_channels}: the windows look transposed",
                   "write np.asarray(window).T.tolist() per row (bars first, channels last)")


def _check_data(root: Path, config: DataConfig, protocol: str) -> tuple[Dataset | None, list[Problem]]:
    if not root.is_dir():
        return None, [Problem(str(root), "a data folder (processed/, raw/, artifacts/splits/v1/)",
                              "a file" if root.exists() else "no such folder",
                              "pass the folder with --data-dir, or run with --demo")]
    labeled, problems = read_windows(root / LABELED, labeled=True)
    unlabeled, more = read_windows(root / UNLABELED, labeled=False)
    problems += more
    split, more = read_split(root / SPLIT)
    problems += more
    for relative, found in ((LABELED, labeled), (UNLABELED, unlabeled), (SPLIT, split)):
        if found is None and not (root / relative).exists():
            misplaced_here = [p for p in [csv_instead(root / relative)] if p] or misplaced(root, relative)
            if misplaced_here:  # replace "no such file" with where it is and the move
                problems = [p for p in problems if p.where != str(root / relative)] + misplaced_here
    both = [t for t in (labeled, unlabeled) if t is not None and t.timestamps is not None]
    if len(both) == 2 and labeled.zoned != unlabeled.zoned:  # UTC against wall clock shifts overlaps by hours
        naive = labeled if not labeled.zoned else unlabeled
        problems.append(Problem(f"{naive.path} column 'timestamp'", "the same convention in both files (both with a "
                                "time zone, or both without)", "one file with a time zone and one without",
                                "localise the naive one: df['timestamp'] = df['timestamp'].dt.tz_localize('America/Chicago')"
                                " (its exchange's zone) before to_parquet"))
    usable = []
    for table in (labeled, unlabeled):
        if table is None:
            continue
        problems += validate.check_ids(table)
        flipped = transposed(table, config)
        if flipped:
            problems.append(flipped)
            continue
        if table.features.shape[1] < MIN_BARS:
            problems.append(Problem(f"{table.path} column 'features'", f"windows of at least {MIN_BARS} bars",
                                    f"{table.features.shape[1]}", "cut longer windows"))
            continue
        if config.channels == "ohlc":
            problems += validate.check_ohlc(table)
        usable.append(table)
    if labeled is not None:  # the label set and the spans need no split
        problems += validate.check_label_set(labeled, tuple(config.classes))
        problems += label_checks.check_spans(labeled, tuple(config.prediction_bars), config.visible_bars,
                                             max(config.span_bars, 0))  # auto (-1) only ever picks a view that fits
    if labeled in usable and unlabeled in usable and unlabeled.features.shape[1:] != labeled.features.shape[1:]:
        problems.append(Problem(f"{unlabeled.path} column 'features'", f"windows of shape {labeled.features.shape[1:]} "
                                "(bars × values, as in the labeled file)", f"{unlabeled.features.shape[1:]}",
                                "cut the pool with the labeled window length"))
        unlabeled = None  # nothing below can compare the two
    if labeled is None or split is None or labeled not in usable:
        return None, problems
    split_problems = check_split(split, len(labeled), labeled.timestamps)
    problems += split_problems
    if split_problems:  # lists that cannot index the rows: nothing below can use them
        return None, problems
    problems += check_temporal(split, len(labeled), labeled.timestamps)  # the checks below still apply
    problems += validate.check_class_counts(labeled, split, tuple(config.classes),
                                            config.min_train_per_class, config.min_val_per_class)
    finite = [t for t in usable if np.isfinite(t.features).all()]
    notes, audit = [], None
    if labeled in finite:  # leakage compares normalised windows: only finite ones can be
        more, notes = validate.check_leakage(labeled, unlabeled if unlabeled in finite else None, split,
                                             shared_channels=config.channels == "ohlc", protocol=protocol)
        problems += more
        audit = label_checks.audit_labels(labeled, normalize_windows(labeled.features,
                                                                    shared_channels=config.channels == "ohlc"))
        disorder = label_checks.order_problem(labeled, audit)
        if disorder is not None and protocol != "blocked":  # blocked: a gate-0 warning (shared bars are purged)
            problems.append(disorder)
    if unlabeled is None or unlabeled not in usable or problems:
        return None, problems
    classes = tuple(config.classes) if config.classes else tuple(sorted(set(labeled.labels.tolist())))
    y = np.array([classes.index(label) for label in labeled.labels], dtype=np.int64)
    spans = () if labeled.expansion is None else (labeled.expansion,)  # spans decide what classifiers read
    digest = fingerprint(labeled.features, y, *spans, unlabeled.features, split.train, split.val, split.test)
    return Dataset(root, labeled, unlabeled, split, classes, y, digest, audit, tuple(notes)), problems


def load_dataset(root: Path, config: DataConfig, protocol: str = "holdout") -> Dataset:
    """Like `check_data`, but raises `DataContractError` listing every problem."""
    dataset, problems = check_data(root, config, protocol)
    if problems or dataset is None:
        raise DataContractError(problems)
    return dataset
