"""The split file: read both key styles, check it is temporal, and write a temporal one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moola.data.errors import Problem

KEY_STYLES = (("train_indices", "val_indices"), ("train_idx", "val_idx"))
TEST_KEYS = ("test_indices", "test_idx")


@dataclass(frozen=True)
class Split:
    path: Path
    train: np.ndarray  # (n_train,) int64 positional rows of the labeled file
    val: np.ndarray  # (n_val,) int64
    test: np.ndarray  # (n_test,) int64, possibly empty


def read_split(path: Path) -> tuple[Split | None, list[Problem]]:
    """Read `{"train_indices", "val_indices"[, "test_indices"]}` or the legacy `train_idx`/`val_idx`."""
    path = Path(path)
    if not path.is_file():
        return None, [Problem(str(path), "a split JSON file", "a folder" if path.is_dir() else "no such file",
                              "write one with: python -m moola make-split DATA_DIR --val-fraction 0.2")]
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        return None, [Problem(str(path), "valid JSON", f"{type(exc).__name__}: {exc}",
                              "rewrite it with: python -m moola make-split DATA_DIR")]
    for train_key, val_key in KEY_STYLES:
        if isinstance(raw, dict) and train_key in raw and val_key in raw:
            break
    else:
        found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        return None, [Problem(str(path), "keys train_indices/val_indices (or train_idx/val_idx)",
                              f"{found}", "rename the keys, or run python -m moola make-split DATA_DIR")]
    lists = {}
    problems = []
    given = [key for key in TEST_KEYS if isinstance(raw, dict) and key in raw]
    if len(given) > 1:
        return None, [Problem(str(path), "one test list (test_indices or test_idx)", f"both keys {given}",
                              "keep one of them")]
    test_key = given[0] if given else TEST_KEYS[0]
    for key in (train_key, val_key, test_key):
        values = raw.get(key)
        values = [] if values is None and key == test_key else values  # no test rows: absent or null
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            wrong = next((v for v in values if not isinstance(v, int) or isinstance(v, bool)), None) \
                if isinstance(values, list) else values
            fix = ("store numbers, not strings: [int(i) for i in indices]" if isinstance(wrong, str)
                   else "store positional indices into the labeled file")
            problems.append(Problem(f"{path} key {key!r}", "a list of integer row positions",
                                    f"{type(wrong).__name__} values, e.g. {str(wrong)[:40]!r}" if isinstance(values, list)
                                    else f"{type(values).__name__} {str(values)[:60]}", fix))
            continue
        huge = [v for v in values if abs(v) >= 2**62]
        if huge:
            problems.append(Problem(f"{path} key {key!r}", "row positions of the labeled file",
                                    f"out-of-range {huge[:3]}", "regenerate the split for this labeled file"))
            continue
        lists[key] = np.asarray(values, dtype=np.int64)
    if problems:  # a list that cannot be read is not checked further (no spurious "empty list")
        return None, problems
    return Split(path, lists[train_key], lists[val_key], lists[test_key]), problems


def check_split(split: Split, n_rows: int, timestamps: np.ndarray | None) -> list[Problem]:
    """Disjoint, in range, non-empty lists (`check_temporal` checks their order)."""
    where = str(split.path)
    problems = []
    parts = {"train": split.train, "val": split.val, "test": split.test}
    for name, rows in parts.items():
        if name != "test" and len(rows) == 0:
            problems.append(Problem(f"{where} {name} list", "a non-empty list", "an empty list",
                                    "python -m moola make-split DATA_DIR --val-fraction 0.2"))
        bad = rows[(rows < 0) | (rows >= n_rows)]
        if len(bad):
            problems.append(Problem(f"{where} {name} list", f"row positions in 0..{n_rows - 1}",
                                    f"out-of-range {bad[:5].tolist()}", "regenerate the split for this labeled file"))
        if len(np.unique(rows)) != len(rows):
            problems.append(Problem(f"{where} {name} list", "each row once", "repeated rows",
                                    "remove the repeats"))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(parts[a], parts[b])
        if len(shared):
            problems.append(Problem(f"{where} {a}/{b} lists", "disjoint lists",
                                    f"{len(shared)} shared rows, e.g. {shared[:5].tolist()}",
                                    "a row belongs to exactly one side of the split"))
    return problems


def check_temporal(split: Split, n_rows: int, timestamps: np.ndarray | None) -> list[Problem]:
    """Every train row precedes every val (and test) row, by timestamp or else row order."""
    where = str(split.path)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    problems = []
    order = timestamps if timestamps is not None else np.arange(n_rows)
    by = "timestamp" if timestamps is not None else "row order (no timestamp column)"
    for later in ("val", "test"):
        if len(parts[later]) and order[split.train].max() >= order[parts[later]].min():
            n_late = int((order[split.train] >= order[parts[later]].min()).sum())
            problems.append(Problem(
                f"{where} train/{later} lists", f"every train row before every {later} row (temporal split, by {by})",
                f"{n_late} train rows at or after the first {later} row (a shuffled or k-fold split?)",
                "python -m moola make-split DATA_DIR --val-fraction 0.2"))
    return problems


def temporal_split(n_rows: int, val_fraction: float, timestamps: np.ndarray | None = None) -> dict:
    """Last `val_fraction` of the rows in time become val; the rest train."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction: expected a number in (0, 1), found {val_fraction}")
    order = np.argsort(timestamps, kind="stable") if timestamps is not None else np.arange(n_rows)
    n_val = max(1, round(n_rows * val_fraction))
    if n_val >= n_rows:
        raise ValueError(f"{n_rows} rows cannot give a non-empty train and val split at {val_fraction}")
    cut = n_rows - n_val
    if timestamps is not None:  # rows sharing the boundary's time all go to val: train must end before val starts
        times = np.asarray(timestamps)[order]
        cut = int(np.searchsorted(times, times[cut], side="left"))
        if cut == 0:
            raise ValueError(f"every row up to the last {n_val} shares the timestamp {times[0]}: no temporal split "
                             "exists; give the windows distinct times, or drop the timestamp column")
    return {"train_indices": sorted(order[:cut].tolist()), "val_indices": sorted(order[cut:].tolist())}


def write_json_atomic(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


def free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2` … : the first that does not exist (every backup kept)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
