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


def leaking_rows(table, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Train rows that are a val row as the model sees it, or share a run of bars with one (gate 0's rule)."""
    copies, shifted = train_leaks(table, train, val, shared_channels=table.features.shape[2] == 4)
    leaks = copies.any(axis=1)
    leaks[shifted[:, 0]] = True
    return train[leaks]


def check_leakage(labeled: WindowTable, unlabeled: WindowTable | None, split: Split,
                  shared_channels: bool = True, protocol: str = "holdout") -> tuple[list[Problem], list[str]]:
    """No window on both sides of the split; no val/test window inside the pretraining pool.

    "The same window" is judged as the model sees it: equal after per-window normalisation (a
    copy ×1.0001 is the same input), or sharing a run of bars at any offset (a window shifted
    by a bar, cut from the same history; `moola.data.overlap`, from the prices alone).

    Judged by the `protocol` in force: under `holdout` the split file's rows are what is scored,
    so each leak is a problem, with a command that removes it. Under `blocked` and
    `walk-forward` every labeled row is scored by folds that purge rows identical to or sharing
    bars with each scored block, and gate 3 leaves every pool window identical to or sharing bars
    with a scored row out of pretraining: the split file's leaks are counted in notes (the pool's
    are counted by gate 3's filter, `moola.evaluation.pool`), never refused.
    Returns (problems, notes).
    """
    held_out = np.concatenate([split.val, split.test])
    copy_matrix, pairs = train_leaks(labeled, split.train, held_out, shared_channels)
    copies = copy_matrix.any(axis=0)  # held-out rows equal to some train row
    if protocol != "holdout":
        notes = []
        if copies.any() or len(pairs):
            notes.append(f"{split.path}: {int(copies.sum())} val/test row(s) identical to a train row and "
                         f"{len(np.unique(pairs[:, 0]))} train row(s) sharing bars with a val/test row across the "
                         f"split's boundary; --cv {protocol} scores every row by folds that purge such neighbours "
                         "(the split's lists are used by --cv holdout only)")
        return [], notes
    problems = []
    root = data_root_of(labeled)
    if copies.any():
        rows = held_out[copies].tolist()
        problems.append(Problem(f"{labeled.path} / {split.path}", "no identical window in train and val/test "
                                "(compared after per-window normalisation: a scaled copy is the same model input)",
                                f"{len(rows)} val/test rows identical to a train row, e.g. rows {rows[:5]}",
                                "keep duplicates (e.g. 102_exp_1/102_exp_2) on one side of the split: "
                                f"python -m moola make-split {root} rewrites the split in time order and leaves the "
                                "train copies out (the old split kept as .bak) "
                                "(or run with --cv blocked, whose folds purge them)"))
    if len(pairs):
        rows = split.train[np.unique(pairs[:, 0])].tolist()
        i, j, s = pairs[0]
        problems.append(Problem(f"{labeled.path} / {split.path}", "no train window sharing bars with a val/test "
                                "window (cut from the same stretch of history)",
                                f"{len(rows)} train rows share bars with val/test rows, e.g. train row "
                                f"{int(split.train[i])} and row {int(held_out[j])} (offset {int(s)} bars); "
                                f"train rows {rows[:8]}",
                                f"drop those rows from the split's train list (python -m moola make-split {root} "
                                "rewrites the split in time order, the last 20% of rows as val, and leaves them out; "
                                "the old split is kept as .bak; or run with --cv blocked, whose folds purge them)"))
    if unlabeled is None or unlabeled.features.shape[1:] != labeled.features.shape[1:] or not len(unlabeled):
        return problems, []  # a shape mismatch is reported by check_data
    leaking = pool_leaks(labeled, unlabeled, held_out, shared_channels)
    identical, sharing = leaking["identical"], leaking["sharing"]
    fix = (f"python -m moola filter-pool {root} writes the pool without them (the old file kept as .bak); "
           "or run with --cv blocked, whose gate 3 leaves them out of pretraining")
    if identical.any():
        rows = held_out[leaking["rows_copied"]].tolist()
        problems.append(Problem(f"{unlabeled.path}", "no unlabeled window equal to a val/test window (after "
                                "per-window normalisation)",
                                f"{len(rows)} val/test rows in the pretraining pool, e.g. rows {rows[:5]} "
                                f"({int(identical.sum())} pool windows)", fix))
    if sharing.any():
        pool_rows = np.flatnonzero(sharing)
        i, j, s = leaking["example"]
        problems.append(Problem(f"{unlabeled.path}", "no unlabeled window sharing bars with a val/test window",
                                f"{len(pool_rows)} pool windows share bars with {leaking['rows_shared']} "
                                f"val/test rows, e.g. pool row {int(i)} and labeled row {int(held_out[j])} "
                                f"(offset {int(s)} bars); pool rows {pool_rows[:8].tolist()}", fix))
    return problems, []


def data_root_of(table: WindowTable):
    """The data root a table was read from (`processed/train_clean.parquet` sits two folders down)."""
    return table.path.parents[1] if len(table.path.parents) > 1 else "DATA_DIR"


def pool_leaks(labeled: WindowTable, unlabeled: WindowTable, rows: np.ndarray, shared_channels: bool = True) -> dict:
    """Pool windows that are labeled `rows` as the model sees them, or share a run of bars with one.

    Returns {"identical": (n_pool,) bool, "sharing": (n_pool,) bool (copies left out),
    "rows_copied": (len(rows),) bool, "rows_shared": int, "example": (pool row, index into rows, offset)}.
    """
    inputs = _model_inputs(labeled, shared_channels)[rows]
    copied = same_window(_model_inputs(unlabeled, shared_channels), inputs)  # (n_pool, len(rows))
    pairs = shared_bars(unlabeled.features, labeled.features[rows])
    pairs = pairs[pairs[:, 2] != 0]
    identical = copied.any(axis=1)
    sharing = np.zeros(len(unlabeled), bool)
    sharing[pairs[:, 0]] = True
    sharing &= ~identical
    return {"identical": identical, "sharing": sharing, "rows_copied": copied.any(axis=0),
            "rows_shared": len(np.unique(pairs[:, 1])), "example": tuple(pairs[0]) if len(pairs) else None}
