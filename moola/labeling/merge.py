"""`python -m moola add-labels labels.csv`: new labeled rows from pool windows, merged into the
labeled file in time order, with the split made again as `make-split` makes it.

Everything is checked before anything is written, and what gate 0 would refuse is refused here
with the same kind of message: the CSV's columns, classes (a typo named with its likely fix),
window ids the pool lacks, spans outside the window or the prediction bars, a second label of the
same span that contradicts the first (in the CSV or in the labeled file), a window that shares bars
with a val row (it would leak into val: `make-split` would leave it out). Then the labeled file
and the split are written atomically, each previous file kept as `.bak[.N]`.

Rows go where time puts them: by the pool's timestamps when the files have them; else by the pool's
row order, where each labeled row is found by its bars (the user's pool holds every labeled window).
Ids follow the user's convention `{base}_exp_{n}` where the pool's ids allow (`window_{start}` with a
stride the labeled rows reveal), else `{pool id}_exp_{n}`.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from moola.data.dataset import LABELED, SPLIT
from moola.data.errors import DataContractError, Problem
from moola.data.overlap import shared_bars
from moola.data.parquet import WindowTable
from moola.data.split import free_name, temporal_split, write_json_atomic
from moola.data.validate import leaking_rows, window_hashes
from moola.labeling.folder import NEITHER_FILE, Folder

REQUIRED = ("window_id", "label")
SPANS = ("expansion_start", "expansion_end")
SKIP = ("neither", "skip")  # the page's "neither / skip" answer: a window looked at, not a class
USER_ID = re.compile(r"^(\d+)_exp_(\d+)$")
POOL_ID = re.compile(r"^window_(\d+)$")


@dataclass(frozen=True)
class Merge:
    """What `add-labels` will write, and what it tells the user."""

    folder: Folder
    pool_rows: np.ndarray  # (m,) pool index of each new row
    labels: list  # (m,) class names
    spans: np.ndarray | None  # (m, 2) or None
    ids: list  # (m,) new window ids
    order: np.ndarray  # (n + m,) rows of [existing, new] in time order
    split: dict  # the new split file
    notes: list  # what was skipped, or left out of the split
    neither: list = ()  # pool window ids answered neither/skip (label-next proposes them no more)


def read_labels(path: Path, has_spans: bool) -> pd.DataFrame:
    """The page's CSV as strings, with its columns checked."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError([Problem(str(path), "a CSV file written by the labeling page (python -m moola "
                                         "label-next)", "a folder" if path.is_dir() else "no such file",
                                         "check the path; the page's Export button saves labels.csv")])
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataContractError([Problem(str(path), "CSV with a header row", f"{type(exc).__name__}: {exc}",
                                         "export it again from the labeling page")]) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    spans = [c for c in SPANS if c in frame.columns]
    problems = []
    if missing:
        problems.append(Problem(str(path), f"columns {','.join(REQUIRED + SPANS)} (the spans optional for data "
                                "without spans)", f"columns {list(frame.columns)}, missing {missing}",
                                "export it again from the labeling page, or rename the columns"))
    elif len(spans) == 1:
        problems.append(Problem(str(path), "both expansion_start and expansion_end, or neither",
                                f"only {spans[0]}", "add the other column"))
    elif has_spans and not spans:
        problems.append(Problem(str(path), "columns expansion_start, expansion_end: the labeled file labels spans",
                                f"columns {list(frame.columns)}", "label on the page (drag across the pattern's "
                                "bars), or add the two columns"))
    if problems:
        raise DataContractError(problems)
    for column in SPANS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.apply(lambda column: column.str.strip())
    for column in SPANS:  # 40.0, as a spreadsheet saves a bar number, is bar 40
        frame[column] = frame[column].str.replace(r"^(-?\d+)\.0*$", r"\1", regex=True)
    frame.index = frame.index + 2  # the CSV's line numbers (the header is line 1)
    return frame


def plan(folder: Folder, csv: Path) -> Merge:
    """Check the CSV against the folder and place its rows; raises `DataContractError` with every problem."""
    labeled, pool = folder.labeled, folder.pool
    has_spans = labeled.expansion is not None
    frame = read_labels(csv, has_spans)
    where = str(csv)
    skipped = frame[frame["label"].str.lower().isin(SKIP)]
    frame = frame[~frame["label"].str.lower().isin(SKIP)]
    problems = _check_rows(frame, folder, where)
    unknown = sorted(set(skipped["window_id"]) - set(pool.window_ids.tolist()))
    if unknown:
        problems.append(Problem(f"{where} column 'window_id' (rows answered neither)", f"ids of windows in the pool "
                                f"({pool.path})", f"{unknown[:5]}", "label windows python -m moola label-next proposes "
                                "from this data folder (--data-dir)"))
    if problems:
        raise DataContractError(problems)
    neither = sorted(set(skipped["window_id"]))
    pool_index = {wid: i for i, wid in enumerate(pool.window_ids.tolist())}
    rows = np.array([pool_index[w] for w in frame["window_id"]], dtype=np.int64)
    spans = frame[list(SPANS)].astype(np.int64).to_numpy() if has_spans else None
    labels = frame["label"].tolist()
    keep, notes, problems = _contradictions(folder, rows, labels, spans, frame, where)
    if problems:
        raise DataContractError(problems)
    rows, labels = rows[keep], [label for label, k in zip(labels, keep) if k]
    spans = spans[keep] if spans is not None else None
    if len(skipped):
        notes.insert(0, f"{len(neither)} window(s) answered neither/skip: not added, and label-next will not propose "
                        f"them again ({NEITHER_FILE})")
    if not len(rows) and neither:
        return Merge(folder, rows, [], spans, [], np.arange(len(labeled)), {}, notes, neither)
    if not len(rows):
        raise DataContractError([Problem(where, "at least one row with a class", "none left to add ("
                                         + "; ".join(notes) + ")", "label some windows on the page, then export")])
    positions, problems = _time_keys(folder, rows)
    if problems:
        raise DataContractError(problems)
    order = np.argsort(positions, kind="stable")
    ids = _new_ids(folder, rows)
    split, more_notes, problems = _split(folder, rows, labels, spans, ids, order, where)
    if problems:
        raise DataContractError(problems)
    return Merge(folder, rows, labels, spans, ids, order, split, notes + more_notes, neither)


def record_neither(merge: Merge) -> Path | None:
    """Append the windows answered neither to `NEITHER_FILE` (each once), which `label-next` leaves out."""
    if not merge.neither:
        return None
    import csv

    path = merge.folder.root / NEITHER_FILE
    known = set(merge.folder.neither)
    rows = ([] if path.is_file() else [["window_id"]]) + [[w] for w in merge.neither if w not in known]
    if rows:
        ends_open = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        with path.open("a", newline="") as out:
            if ends_open:  # a hand-edited file without its last newline
                out.write("\n")
            csv.writer(out, lineterminator="\n").writerows(rows)
    return path


def _check_rows(frame: pd.DataFrame, folder: Folder, where: str) -> list:
    labeled, pool, classes = folder.labeled, folder.pool, folder.classes
    problems = []
    unknown = frame[~frame["label"].isin(classes)]
    if len(unknown):
        hints = {label: difflib.get_close_matches(label.lower(), classes, n=1, cutoff=0.6)
                 for label in unknown["label"].unique()}
        fix = "; ".join(f"{label!r} -> {near[0]!r}" for label, near in hints.items() if near)
        problems.append(Problem(f"{where} column 'label', line(s) {_lines(unknown.index)}",
                                f"one of the classes {list(classes)} (or neither/skip)",
                                f"{sorted(unknown['label'].unique())}",
                                (f"correct {fix}" if fix else "correct the labels") + ", or label them again on the page"))
    absent = frame[~frame["window_id"].isin(set(pool.window_ids.tolist()))]
    if len(absent):
        problems.append(Problem(f"{where} column 'window_id', line(s) {_lines(absent.index)}",
                                f"ids of windows in the pool ({pool.path})", f"{absent['window_id'].unique()[:5].tolist()}",
                                "label windows python -m moola label-next proposes from this data folder (--data-dir)"))
    if labeled.expansion is None:
        given = frame[(frame["expansion_start"] != "") | (frame["expansion_end"] != "")]
        if len(given):
            problems.append(Problem(f"{where} columns 'expansion_start', 'expansion_end', line(s) {_lines(given.index)}",
                                    f"no spans: the labeled file {labeled.path} has none", "spans",
                                    "leave the two columns empty, or add spans to every labeled row first"))
        return problems
    numeric = frame[list(SPANS)].apply(lambda c: c.str.fullmatch(r"-?\d+")).all(axis=1)
    if not numeric.all():
        bad = frame[~numeric]
        problems.append(Problem(f"{where} columns 'expansion_start', 'expansion_end', line(s) {_lines(bad.index)}",
                                "whole bar numbers", f"{bad[list(SPANS)].to_numpy()[:3].tolist()}",
                                "drag across the pattern's bars on the page (every row with a class needs its span)"))
        return problems
    start, end = (frame[c].astype(np.int64).to_numpy() for c in SPANS)
    n_bars = labeled.features.shape[1]
    first, last = tuple(folder.config.prediction_bars) or (0, n_bars - 1)
    outside = (start > end) | (start < max(0, first)) | (end > min(n_bars - 1, last))
    if outside.any():
        bad = frame[outside]
        declared = "the prediction bars (data.prediction_bars)" if folder.config.prediction_bars else "the window"
        problems.append(Problem(f"{where} columns 'expansion_start', 'expansion_end', line(s) {_lines(bad.index)}",
                                f"expansion_start <= expansion_end, both inside {declared}: bars {first}..{last}",
                                f"{bad[list(SPANS)].to_numpy()[:3].tolist()}",
                                "label those windows again on the page, inside the shaded bars"))
    return problems


def _contradictions(folder: Folder, rows: np.ndarray, labels: list, spans, frame: pd.DataFrame, where: str):
    """Rows to keep (a repeat of a row already labeled alike is dropped), notes, and problems: a second
    label of the same span (or window, without spans) that contradicts the first."""
    labeled = folder.labeled
    span_of = (lambda i: ()) if spans is None else (lambda i: tuple(spans[i]))
    existing_span = (lambda j: ()) if labeled.expansion is None else (lambda j: tuple(labeled.expansion[j]))
    by_window = {}
    for j, digest in enumerate(window_hashes(labeled.features)):
        by_window.setdefault(digest, []).append(j)
    pool_hashes = window_hashes(folder.pool.features[rows])
    seen, keep, notes, problems, repeats = {}, np.ones(len(rows), bool), [], [], 0
    lines = frame.index.to_numpy()
    for i, (row, label) in enumerate(zip(rows, labels)):
        key = (int(row), span_of(i))
        if key in seen:
            first = seen[key]
            keep[i] = False
            if labels[first] != label:
                problems.append(Problem(f"{where} lines {lines[first]} and {lines[i]}",
                                        "one class per window and span", f"{labels[first]!r} and {label!r} for "
                                        f"{frame['window_id'].iloc[i]} span {span_of(i) or 'none'}",
                                        "keep the one you mean and delete the other line"))
            else:
                repeats += 1
            continue
        seen[key] = i
        same = [j for j in by_window.get(pool_hashes[i], []) if existing_span(j) == span_of(i)]
        if same:  # the labeled file labels this window and span already: agreeing with any row is a repeat
            keep[i] = False
            if all(labeled.labels[j] != label for j in same):
                j = same[0]
                problems.append(Problem(f"{where} line {lines[i]}", "a label that agrees with the labeled file's "
                                        "label of the same window and span", f"{label!r}, where {labeled.path} row "
                                        f"{j} ({labeled.window_ids[j]}) says {labeled.labels[j]!r}",
                                        "delete the line, or correct the labeled file's row if it was wrong"))
            else:
                repeats += 1
    if repeats:
        notes.append(f"{repeats} row(s) repeat a label already given (same window, span and class): not added again")
    return keep, notes, problems


def _time_keys(folder: Folder, rows: np.ndarray) -> tuple[np.ndarray, list]:
    """One sort key per row of [existing, new]: the existing rows keep their order, each new row goes
    after the last existing row not later than it."""
    labeled, pool = folder.labeled, folder.pool
    if labeled.timestamps is not None:
        if pool.timestamps is None:
            return np.zeros(0), [Problem(f"{pool.path} column 'timestamp'", "a timestamp per pool window (the "
                                         "labeled file has them: new rows are placed by time)", "no such column",
                                         "add the pool's timestamps, or drop the labeled file's")]
        existing = labeled.timestamps.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        new = pool.timestamps[rows].astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    else:
        existing, problems = _pool_positions(folder)
        if problems:
            return np.zeros(0), problems
        new = rows.astype(np.float64)
    existing = np.maximum.accumulate(existing)  # rows out of order keep their place
    return np.concatenate([existing, new + 0.5]), []  # a tie goes after the existing row


def _pool_positions(folder: Folder) -> tuple[np.ndarray, list]:
    """Where each labeled row sits in the pool's order: its own window there, or the one it shares
    the most bars with (no timestamps: the pool's order is the time order)."""
    labeled, pool = folder.labeled, folder.pool
    pairs = shared_bars(labeled.features, pool.features)
    position = np.full(len(labeled), np.nan)
    if len(pairs):
        best = pairs[np.lexsort((np.abs(pairs[:, 2]), pairs[:, 0]))]  # per row, the smallest offset first
        first = np.unique(best[:, 0], return_index=True)[1]
        position[best[first, 0]] = best[first, 1]
    lost = np.flatnonzero(np.isnan(position))
    if len(lost):
        return position, [Problem(f"{labeled.path}", "every labeled window in the pool (no timestamps: new rows are "
                                  "placed in the pool's order)", f"{len(lost)} row(s) whose bars the pool does not "
                                  f"hold, e.g. {labeled.window_ids[lost][:3].tolist()}",
                                  "add a timestamp column to both files, or cut the pool over the labeled history")]
    return position, []


def _new_ids(folder: Folder, rows: np.ndarray) -> list:
    """`{base}_exp_{n}`, row by row: the base of a labeled row of the same window; else `base` from the
    pool's `window_{start}` id and the stride the labeled rows with such ids reveal; else the pool id."""
    labeled, pool = folder.labeled, folder.pool
    user = [USER_ID.match(str(w)) for w in labeled.window_ids]
    starts = [POOL_ID.match(str(w)) for w in pool.window_ids[rows]]
    stride = _stride(folder) if any(user) and any(starts) else None
    base_of_window = {digest: m.group(1) for digest, m in zip(window_hashes(labeled.features), user) if m}
    taken = set(map(str, labeled.window_ids))
    used = Counter(m.group(1) for m in user if m)
    ids = []
    for row, digest, start in zip(rows, window_hashes(pool.features[rows]), starts):
        if digest in base_of_window:
            base = base_of_window[digest]
        elif stride is not None and start and (int(start.group(1)) - stride[1]) % stride[0] == 0:
            base = str((int(start.group(1)) - stride[1]) // stride[0])
        else:
            base = str(pool.window_ids[row])
        used[base] += 1
        n = used[base]
        while f"{base}_exp_{n}" in taken:
            n += 1
        taken.add(f"{base}_exp_{n}")
        ids.append(f"{base}_exp_{n}")
    return ids


def _stride(folder: Folder) -> tuple[int, int] | None:
    """`(stride, offset)` with `start = stride * base + offset` on every labeled row with a `{base}_exp_{n}`
    id whose window is in the pool verbatim under a `window_{start}` id, when at least two bases agree and
    none contradicts."""
    labeled, pool = folder.labeled, folder.pool
    at = {digest: int(POOL_ID.match(str(w)).group(1)) for digest, w in zip(window_hashes(pool.features), pool.window_ids)
          if POOL_ID.match(str(w))}
    pairs = {(int(USER_ID.match(str(w)).group(1)), at[d]) for w, d in zip(labeled.window_ids,
                                                                           window_hashes(labeled.features))
             if d in at and USER_ID.match(str(w))}
    if len({base for base, _ in pairs}) < 2:
        return None
    (b0, s0), (b1, s1) = min(pairs), max(pairs)
    if (s1 - s0) % (b1 - b0):
        return None
    stride = (s1 - s0) // (b1 - b0)
    offset = s0 - stride * b0
    return (stride, offset) if stride > 0 and all(s == stride * b + offset for b, s in pairs) else None


def merged_table(merge: Merge) -> WindowTable:
    """The labeled rows after the merge, decoded (in time order)."""
    labeled, pool, rows = merge.folder.labeled, merge.folder.pool, merge.pool_rows
    timestamps = None if labeled.timestamps is None else np.concatenate([labeled.timestamps, pool.timestamps[rows]])
    expansion = None if merge.spans is None else np.concatenate([labeled.expansion, merge.spans])
    o = merge.order
    return WindowTable(labeled.path, np.concatenate([labeled.window_ids, np.asarray(merge.ids, dtype=object)])[o],
                       np.concatenate([labeled.features, pool.features[rows]])[o],
                       np.concatenate([labeled.labels, np.asarray(merge.labels, dtype=object)])[o],
                       None if timestamps is None else timestamps[o], labeled.zoned,
                       None if expansion is None else expansion[o])


def _split(folder: Folder, rows, labels, spans, ids, order, where) -> tuple[dict, list, list]:
    """The split `make-split` would write for the merged rows, at the old split's val share; a new row
    that would leak into val (share bars with a val row) is refused."""
    old = folder.split
    n_old = len(folder.labeled)
    fraction = len(old.val) / n_old
    table = merged_table(Merge(folder, rows, labels, spans, ids, order, {}, []))
    split = temporal_split(len(table), fraction, table.timestamps)
    train, val = np.asarray(split["train_indices"]), np.asarray(split["val_indices"])
    leaking = leaking_rows(table, train, val)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))  # where each row of [existing, new] lands
    new_at = {int(position[n_old + k]): k for k in range(len(rows))}
    leaks_new = [new_at[r] for r in leaking.tolist() if r in new_at]
    if leaks_new:
        return {}, [], [Problem(f"{where} window(s) {[folder.pool.window_ids[rows[k]] for k in leaks_new][:5]}",
                                "new windows that share no bars with a val row", "windows that would leak into val "
                                "(make-split would leave them out of the split)",
                                "delete those lines: label windows python -m moola label-next proposes")]
    notes = []
    if len(leaking):
        split["train_indices"] = sorted(set(train.tolist()) - set(leaking.tolist()))
        notes.append(f"left {len(leaking)} train row(s) out of the split, as make-split does: they share bars with "
                     "a val row")
    moved = _moved(old, split, position[:n_old], len(order))
    if moved:
        notes.append(f"existing rows that changed sides in the new temporal split: {moved} (the split is made "
                     "again in time order, as make-split makes it; under --cv holdout that changes what is scored)")
    if len(old.test):
        notes.append(f"the old split's {len(old.test)} test row(s) are not in the new split (make-split writes none); "
                     "the old file is kept")
    counts = {side: Counter(table.labels[split[f"{side}_indices"]].tolist()) for side in ("train", "val")}
    classes = folder.classes
    lacking = [(side, c) for side in counts for c in classes
               if counts[side].get(c, 0) < (folder.config.min_train_per_class if side == "train"
                                            else folder.config.min_val_per_class)]
    if lacking:
        return {}, [], [Problem(f"{folder.root / SPLIT}", "every class on both sides of the new temporal split",
                                ", ".join(f"{side} {counts[side].get(c, 0)} row(s) of {c!r}" for side, c in lacking),
                                "label windows of the missing class too, then add them together")]
    return split, notes, []


def _moved(old, split: dict, position: np.ndarray, n_rows: int) -> str:
    """Existing rows whose side (train, val, test, left out) differs between the old and the new split,
    in words ("" when none): `position[i]` is where existing row i lands."""
    def sides(parts: dict, n: int) -> np.ndarray:
        side = np.full(n, "left out", dtype=object)
        for name, rows in parts.items():
            side[np.asarray(rows, dtype=np.int64)] = name
        return side

    before = sides({"train": old.train, "val": old.val, "test": old.test}, len(position))
    after = sides({"train": split["train_indices"], "val": split["val_indices"]}, n_rows)[position]
    changes = Counter(f"{a} -> {b}" for a, b in zip(before, after) if a != b)
    return ", ".join(f"{n} {change}" for change, n in sorted(changes.items()))


def new_problems(merge: Merge, table: pa.Table, config, protocol: str) -> list:  # protocol: --cv
    """What gate 0's checks find in the merged folder and did not find in the old one (numbers aside: rows
    shift when rows are inserted), checked in a scratch folder beside the pool before anything is written."""
    from moola.data.dataset import UNLABELED, check_data
    from moola.data.ucr import META

    root = merge.folder.root

    def words(problem, base) -> str:
        return re.sub(r"\d+", "#", str(problem).replace(str(base), str(root)))

    before = {words(p, root) for p in check_data(root, config, protocol)[1]}
    with tempfile.TemporaryDirectory(prefix="moola-add-labels-") as scratch:
        scratch = Path(scratch)
        (scratch / LABELED).parent.mkdir(parents=True)
        pq.write_table(table, scratch / LABELED)
        write_json_atomic(scratch / SPLIT, merge.split)
        (scratch / UNLABELED).parent.mkdir(parents=True)
        try:
            os.symlink((root / UNLABELED).resolve(), scratch / UNLABELED)
        except OSError:  # a file system without links: a copy
            shutil.copy2(root / UNLABELED, scratch / UNLABELED)
        if (root / META).is_file():
            shutil.copy2(root / META, scratch / META)
        after = check_data(scratch, config, protocol)[1]
        return [Problem(*(text.replace(str(scratch), str(root)) for text in (p.where, p.expected, p.found, p.fix)))
                for p in after if words(p, scratch) not in before]


def write(merge: Merge, table: pa.Table) -> dict:
    """Write the labeled file and the split: both written beside their targets first, each old file kept
    as `.bak[.N]`, then each moved into place (an atomic rename). Returns the paths."""
    labeled_path = merge.folder.root / LABELED
    split_path = merge.folder.root / SPLIT
    tmp_labeled = labeled_path.with_suffix(labeled_path.suffix + ".tmp")
    tmp_split = split_path.with_suffix(split_path.suffix + ".tmp")
    backups = {}
    try:
        pq.write_table(table, tmp_labeled)
        write_json_atomic(tmp_split, merge.split)
        for path in (labeled_path, split_path):
            backups[path] = free_name(path.with_name(path.name + ".bak"))
            shutil.copy2(path, backups[path])
        tmp_labeled.replace(labeled_path)
        try:
            tmp_split.replace(split_path)
        except OSError:  # the labeled file must not go on without its split: the old one back
            shutil.copy2(backups[labeled_path], labeled_path)
            raise
    finally:
        for tmp in (tmp_labeled, tmp_split):
            tmp.unlink(missing_ok=True)
    return {"labeled": labeled_path, "split": split_path, "backups": list(backups.values())}


def merged_arrow(merge: Merge) -> pa.Table:
    """The labeled file's own columns and types for [existing, new] rows, in time order; the new rows'
    bars and timestamps taken from the pool file as stored there."""
    folder = merge.folder
    existing = pq.read_table(folder.root / LABELED)
    source = pq.read_table(folder.pool.path, columns=[c for c in ("features", "timestamp")
                                                      if c in pq.read_schema(folder.pool.path).names])
    taken = source.take(pa.array(merge.pool_rows))
    n = len(merge.pool_rows)
    columns = []
    for field in existing.schema:
        if field.name == "window_id":
            values = pa.array(merge.ids)
        elif field.name == "label":
            values = pa.array(merge.labels)
        elif field.name in SPANS:
            values = pa.array(merge.spans[:, SPANS.index(field.name)])
        elif field.name in taken.column_names:
            values = taken[field.name].combine_chunks()
        else:
            values = pa.nulls(n)
        columns.append(values.cast(field.type))
    new = pa.Table.from_arrays(columns, schema=existing.schema)
    return pa.concat_tables([existing, new]).take(pa.array(merge.order))


def describe(merge: Merge, written: dict) -> list:
    """What changed, in lines."""
    folder, old = merge.folder, merge.folder.split
    counts = Counter(merge.labels)
    n_old, n_new = len(folder.labeled), len(folder.labeled) + len(merge.ids)
    lines = [(f"added {len(merge.ids)} labeled row(s) from {len(set(merge.pool_rows.tolist()))} pool window(s) "
             f"({', '.join(f'{counts[c]} {c}' for c in folder.classes if counts[c])}): {n_old} -> {n_new} rows"),
             "  new ids: " + ", ".join(merge.ids[:10]) + (" …" if len(merge.ids) > 10 else ""),
             (f"  placed by {'timestamp' if folder.labeled.timestamps is not None else 'the pool order'} "
             "(the time order the protocol assumes)"),
             (f"  split (as make-split writes it, val share {len(old.val) / n_old:.2f}): train {len(old.train)} -> "
             f"{len(merge.split['train_indices'])}, val {len(old.val)} -> {len(merge.split['val_indices'])}"),
             f"  wrote {written['labeled']} and {written['split']}; the previous files are "
             + " and ".join(map(str, written["backups"]))]
    lines += [f"  note: {note}" for note in merge.notes]
    return lines


def _lines(index) -> str:
    values = list(index)
    return ", ".join(map(str, values[:8])) + (f" … ({len(values)} in all)" if len(values) > 8 else "")
