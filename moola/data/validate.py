"""Content checks of the data contract (SPEC §2) that need more than one file or the config."""

from __future__ import annotations

import hashlib

import numpy as np

from moola.data.errors import Problem
from moola.data.normalize import normalize_windows
from moola.data.overlap import same_window, shared_bars
from moola.data.parquet import WindowTable, _rows
from moola.data.split import Split

OPEN, HIGH, LOW, CLOSE = range(4)


def check_ohlc(table: WindowTable) -> list[Problem]:
    """Bars must satisfy low <= min(open, close) <= max(open, close) <= high."""
    x = table.features  # (N, T, 4)
    where = f"{table.path} column 'features'"
    if x.shape[2] != 4:
        return [Problem(where, "4 values per bar (open, high, low, close)", f"{x.shape[2]}",
                        "export OHLC bars, or use --set data.channels=generic for other series")]
    top = np.maximum(x[..., OPEN], x[..., CLOSE])
    bottom = np.minimum(x[..., OPEN], x[..., CLOSE])
    problems = []
    for name, bad in (("high < max(open, close)", x[..., HIGH] < top),
                      ("low > min(open, close)", x[..., LOW] > bottom),
                      ("high < low", x[..., HIGH] < x[..., LOW])):
        rows = bad.any(axis=1)
        if rows.any():
            problems.append(Problem(where, "valid OHLC bars in the order open, high, low, close",
                                    f"{name} in {_rows(rows)}", "check the column order and the bar builder"))
    return problems


def check_ids(table: WindowTable) -> list[Problem]:
    ids, counts = np.unique(table.window_ids.astype(str), return_counts=True)
    dup = ids[counts > 1]
    if len(dup):
        return [Problem(f"{table.path} column 'window_id'", "unique ids",
                        f"{len(dup)} repeated, e.g. {dup[:3].tolist()}", "make window_id unique per row")]
    return []


def check_label_set(table: WindowTable, classes: tuple) -> list[Problem]:
    """The labels are exactly the expected classes (when the profile names them)."""
    found = sorted(set(table.labels.tolist()))
    if not classes and len(found) < 2:
        return [Problem(f"{table.path} column 'label'", "at least two classes", f"only {found}",
                        "label windows of another class, or set --set data.classes=a,b")]
    if classes and found != sorted(classes):
        near = {c.lower(): c for c in classes}
        hint = [f"{f!r} -> {near[f.strip().lower()]!r}" for f in found if f not in classes and f.strip().lower() in near]
        return [Problem(f"{table.path} column 'label'", f"exactly the classes {sorted(classes)}", f"{found}",
                        (f"rename {', '.join(hint)}; " if hint else "") +
                        "relabel, or set --set data.classes=a,b to the classes you train")]
    return []


def check_class_counts(table: WindowTable, split: Split, classes: tuple, min_train: int, min_val: int) -> list[Problem]:
    """Enough rows of every class on each side of the split."""
    found = sorted(set(table.labels.tolist()))
    if classes and found != sorted(classes):
        return []  # check_label_set reports it
    problems = []
    for name, rows, minimum in (("train", split.train, min_train), ("val", split.val, min_val)):
        labels, counts = np.unique(table.labels[rows].astype(str), return_counts=True)
        count = dict(zip(labels.tolist(), counts.tolist()))
        for cls in found:
            if count.get(cls, 0) < minimum:
                problems.append(Problem(f"{split.path} {name} rows", f"at least {minimum} rows of {cls!r}",
                                        f"{count.get(cls, 0)}", "move the split boundary or label more windows"))
    return problems


def _model_inputs(table: WindowTable, shared_channels: bool) -> np.ndarray:
    return normalize_windows(table.features, shared_channels=shared_channels)


def window_hashes(features: np.ndarray) -> np.ndarray:
    """One digest per window of its exact float32 values; `(N, T, C)` -> `(N,)` bytes."""
    contiguous = np.ascontiguousarray(features, dtype=np.float32)
    return np.array([hashlib.blake2b(w.tobytes(), digest_size=16).digest() for w in contiguous], dtype=object)


def labeled_hashes(features: np.ndarray) -> list:
    """`window_hashes` as hex strings, for a checkpoint's JSON metadata: which windows a model has seen."""
    return [digest.hex() for digest in window_hashes(features)]


def train_leaks(labeled: WindowTable, train: np.ndarray, held_out: np.ndarray,
                shared_channels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """How train rows leak into held-out rows: `(copies, shifted)`.

    `copies` (n_train, n_held) bool: equal after per-window normalisation. `shifted` (m, 3) rows
    `(i, j, offset)` of `overlap.shared_bars` on the prices, offset 0 (a copy) left out.
    """
    inputs = _model_inputs(labeled, shared_channels)
    copies = same_window(inputs[train], inputs[held_out])
    shifted = shared_bars(labeled.features[train], labeled.features[held_out])
    return copies, shifted[shifted[:, 2] != 0]


def check_leakage(labeled: WindowTable, unlabeled: WindowTable | None, split: Split,
                  shared_channels: bool = True) -> list[Problem]:
    """No window on both sides of the split; no val/test window inside the pretraining pool.

    "The same window" is judged as the model sees it: equal after per-window normalisation (a
    copy ×1.0001 is the same input), or sharing a run of bars at any offset (a window shifted
    by a bar, cut from the same history; `moola.data.overlap`, from the prices alone).
    """
    held_out = np.concatenate([split.val, split.test])
    problems = []
    copy_matrix, pairs = train_leaks(labeled, split.train, held_out, shared_channels)
    copies = copy_matrix.any(axis=0)  # held-out rows equal to some train row
    if copies.any():
        rows = held_out[copies].tolist()
        problems.append(Problem(f"{labeled.path} / {split.path}", "no identical window in train and val/test "
                                "(compared after per-window normalisation: a scaled copy is the same model input)",
                                f"{len(rows)} val/test rows identical to a train row, e.g. rows {rows[:5]}",
                                "keep duplicates (e.g. 102_exp_1/102_exp_2) on one side of the split"))
    if len(pairs):
        rows = split.train[np.unique(pairs[:, 0])].tolist()
        i, j, s = pairs[0]
        problems.append(Problem(f"{labeled.path} / {split.path}", "no train window sharing bars with a val/test "
                                "window (cut from the same stretch of history)",
                                f"{len(rows)} train rows share bars with val/test rows, e.g. train row "
                                f"{int(split.train[i])} and row {int(held_out[j])} (offset {int(s)} bars); "
                                f"train rows {rows[:8]}",
                                "drop those rows from the split's train list (python -m moola make-split DATA_DIR "
                                "leaves them out)"))
    if unlabeled is None:
        return problems
    if unlabeled.features.shape[1:] != labeled.features.shape[1:]:
        return problems  # reported by check_data
    if not len(unlabeled):
        return problems
    inputs = _model_inputs(labeled, shared_channels)
    pool_copies = same_window(_model_inputs(unlabeled, shared_channels), inputs[held_out]).any(axis=0)
    if pool_copies.any():
        rows = held_out[pool_copies].tolist()
        problems.append(Problem(f"{unlabeled.path}", "no unlabeled window equal to a val/test window (after "
                                "per-window normalisation)",
                                f"{len(rows)} val/test rows in the pretraining pool, e.g. rows {rows[:5]}",
                                "drop windows from the val period out of the unlabeled pool"))
    pool_pairs = shared_bars(unlabeled.features, labeled.features[held_out])
    pool_pairs = pool_pairs[pool_pairs[:, 2] != 0]
    if len(pool_pairs):
        pool_rows = np.unique(pool_pairs[:, 0])
        i, j, s = pool_pairs[0]
        problems.append(Problem(f"{unlabeled.path}", "no unlabeled window sharing bars with a val/test window",
                                f"{len(pool_rows)} pool windows share bars with {len(np.unique(pool_pairs[:, 1]))} "
                                f"val/test rows, e.g. pool row {int(i)} and labeled row {int(held_out[j])} "
                                f"(offset {int(s)} bars); pool rows {pool_rows[:8].tolist()}",
                                "cut the unlabeled pool from bars before the first val window"))
    return problems
