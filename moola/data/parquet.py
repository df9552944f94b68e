"""Vectorised parquet decoding: a nested `features` list column to one float32 `(N, T, C)` array."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moola.data.errors import Problem

FEATURES = "features"


@dataclass(frozen=True, eq=False)
class WindowTable:
    """Decoded windows of one parquet file (compared by identity: it holds arrays)."""

    path: Path
    window_ids: np.ndarray  # (N,) object of str
    features: np.ndarray  # (N, T, C) float32
    labels: np.ndarray | None = None  # (N,) object of str; labeled files only
    timestamps: np.ndarray | None = None  # (N,) datetime64[ns] (UTC when the file's were zoned); when present
    zoned: bool = False  # the file's timestamps carried a time zone
    expansion: np.ndarray | None = None  # (N, 2) int64 start/end; when the file has them

    def __len__(self) -> int:
        return len(self.window_ids)


def _is_list(arrow_type) -> bool:
    return (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"rows {shown}{' …' if len(rows) > limit else ''} ({len(rows)} in all)"


def decode_features(column: pa.ChunkedArray | pa.Array, where: str) -> tuple[np.ndarray | None, list[Problem]]:
    """Decode a list<list<float>> column to `(N, T, C)` float32 without a Python loop per row.

    Returns the array (None when it cannot be decoded) and the problems found.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    problems: list[Problem] = []
    n = len(column)
    if not _is_list(column.type):
        return None, [Problem(where, "a nested list column (T bars × C floats)",
                              f"type {column.type}", "write each window as a list of bars")]
    if column.null_count:
        problems.append(Problem(where, "a window in every row", f"null in {_rows(np.asarray(column.is_null()))}",
                                "drop or refill those rows"))
        return None, problems
    if not _is_list(column.type.value_type):
        lengths = np.asarray(pc.list_value_length(column))
        return None, [Problem(
            where, "a nested list of T bars, each C floats (e.g. 105 × 4)",
            f"a flat list of {lengths[0] if n else 0} floats per row",
            "reshape each row to bars, e.g. np.asarray(row).reshape(-1, 4).tolist() for OHLC",
        )]
    bar_counts = np.asarray(pc.list_value_length(column))  # (N,) bars per window
    bars = column.flatten()
    if n == 0:
        return np.zeros((0, 0, 0), np.float32), problems
    row_of_bar = np.repeat(np.arange(n), bar_counts)  # (sum T_i,) owning row of each bar
    if bars.null_count:  # a missing bar (a minute with no trades written as null)
        missing = np.zeros(n, bool)
        missing[row_of_bar[np.asarray(bars.is_null())]] = True
        return None, [Problem(where, "a bar (C numbers) at every step", f"null bars in {_rows(missing)}",
                              "fill the missing bars (e.g. carry the last close) or drop those windows")]
    channel_counts = np.asarray(pc.list_value_length(bars))  # (sum T_i,) floats per bar
    if not len(channel_counts) or not channel_counts.max():
        empty = bar_counts == 0 if not len(channel_counts) else np.ones(n, bool)
        return None, [Problem(where, "windows of T bars × C numbers", f"empty windows or bars in {_rows(empty)}",
                              "write each window's bars, each bar's values (e.g. 105 × 4)")]
    n_bars, n_channels = int(np.median(bar_counts)), int(np.median(channel_counts))
    bad_rows = bar_counts != n_bars
    if bad_rows.any():
        problems.append(Problem(where, f"every window with the same number of bars ({n_bars})",
                                f"other lengths in {_rows(bad_rows)}", "cut or drop the ragged windows"))
    bad_bars = channel_counts != n_channels
    if bad_bars.any():
        bad = np.zeros(n, bool)
        bad[row_of_bar[bad_bars]] = True
        problems.append(Problem(where, f"every bar with {n_channels} values",
                                f"other bar widths in {_rows(bad)}", "fix the bars of those rows"))
    if problems:
        return None, problems
    values = bars.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type) or pa.types.is_decimal(values.type)):
        return None, [Problem(where, "numbers in every bar (float or int)", f"bars of {values.type}",
                              "write each bar as floats, e.g. df['features'] = [np.asarray(w, float).tolist() ...]")]
    per_window = n_bars * n_channels
    missing = np.zeros(n, bool)
    if values.null_count:  # report the rows, then go on: NaN and inf elsewhere are found in this same pass
        missing[np.flatnonzero(np.asarray(values.is_null())) // per_window] = True
        problems.append(Problem(where, "no null values inside windows", f"null values in {_rows(missing)}",
                                "fill or drop those windows"))
    values = values.cast(pa.float64(), safe=False).fill_null(np.nan)  # ints and decimals too: a null becomes NaN
    wide = values.to_numpy(zero_copy_only=False).reshape(n, n_bars, n_channels)  # (N * T * C,) -> (N, T, C) float64
    huge = (np.isfinite(wide) & (np.abs(wide) > np.finfo(np.float32).max)).any(axis=(1, 2))
    if huge.any():
        problems.append(Problem(where, f"values within float32 range (|x| <= {np.finfo(np.float32).max:.2e})",
                                f"larger values in {_rows(huge)}", "fix the export of those windows"))
    with np.errstate(over="ignore"):
        features = wide.astype(np.float32)
    for name, bad in (("NaN", np.isnan(features).any(axis=(1, 2)) & ~missing),
                      ("inf", np.isinf(wide).any(axis=(1, 2)))):
        if bad.any():
            problems.append(Problem(where, "finite values", f"{name} in {_rows(bad)}",
                                    "drop those windows or fill the gaps before export"))
    return features, problems


def _strings(table: pa.Table, name: str, path: Path, what: str) -> tuple[np.ndarray | None, list[Problem]]:
    """A column as `(N,)` object array of str; a null or empty value, or a type that is not a scalar, is a problem."""
    where = f"{path} column {name!r}"
    column = table[name]
    if _is_list(column.type) or pa.types.is_struct(column.type) or pa.types.is_map(column.type):
        return None, [Problem(where, f"one {what} per row (a string)", f"type {column.type}",
                              f"write a single {what} per row")]
    try:
        values = np.asarray(column.cast(pa.string()).to_pylist(), dtype=object)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return None, [Problem(where, f"{what}s as strings", f"type {column.type} ({exc})",
                              f"write the {what} column as strings")]
    empty = np.array([value is None or not str(value).strip() for value in values], bool)
    if pa.types.is_floating(column.type):  # NaN casts to the string "nan"
        empty |= np.asarray(pc.is_nan(column.combine_chunks()).fill_null(True))
    if empty.any():
        return None, [Problem(where, f"a {what} in every row", f"null or empty in {_rows(empty)}",
                              f"{'label' if what == 'label' else 'fill'} or drop those rows")]
    return values, []


def timestamp_fix(example=None, kind=None) -> str:
    """The conversion for what the column holds: ISO strings, other strings (say the format), epoch numbers."""
    tail = " before to_parquet, or drop the column (row order is then time order)"
    if isinstance(example, str) and re.match(r"^\d{4}-\d{2}-\d{2}", example.strip()):
        return f"store datetimes: df['timestamp'] = pd.to_datetime(df['timestamp']){tail}"
    if isinstance(example, str):
        return ("store datetimes: df['timestamp'] = pd.to_datetime(df['timestamp'], format=...) with the format "
                f"of these strings (e.g. '%m/%d/%Y %H:%M' if the month comes first, '%d/%m/%Y %H:%M' if the day does){tail}")
    if kind is not None and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return f"store datetimes: df['timestamp'] = pd.to_datetime(df['timestamp'], unit='s') (or unit='ms'){tail}"
    return f"store datetimes (pd.to_datetime){tail}"


def decode_timestamps(column: pa.ChunkedArray, where: str) -> tuple[np.ndarray | None, list[Problem]]:
    """A timestamp (or date) column to `(N,)` datetime64[ns]; strings, numbers and NaT are problems."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        example = next((v for v in column.to_pylist() if v is not None), None)
        return None, [Problem(where, "a datetime column (timestamp type)", f"strings, e.g. {example!r}",
                              timestamp_fix(example))]
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        return None, [Problem(where, "a datetime column (timestamp type)", f"type {kind}", timestamp_fix(kind=kind))]
    try:
        column = column.combine_chunks()  # an Array: ChunkedArray.to_numpy takes no arguments before pyarrow 13
        column = column.cast(pa.timestamp("ns", tz=kind.tz) if pa.types.is_timestamp(kind) else pa.timestamp("ns"))
        nulls = np.asarray(column.is_null())
        ns = np.asarray(column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # out of datetime64[ns] range
        return None, [Problem(where, "datetimes within 1677–2262 (nanoseconds)", f"{exc}", timestamp_fix())]
    if nulls.any():
        return None, [Problem(where, "a time in every row", f"null (NaT) in {_rows(nulls)}",
                              "fill or drop those rows, or drop the timestamp column (row order is then time order)")]
    return ns.view("datetime64[ns]"), []


SPAN_COLUMNS = ("expansion_start", "expansion_end")


def decode_spans(table: pa.Table, path: Path) -> tuple[np.ndarray | None, list[Problem]]:
    """`(N, 2)` int64 spans from `expansion_start`/`expansion_end`, or None when the file has neither.

    Whole numbers stored as floats (what pandas writes once a NaN was there) are read as integers;
    one column without the other, a null, a fraction or a non-number is a problem: the spans
    decide what the classifiers read, so they are never dropped silently.
    """
    present = [name for name in SPAN_COLUMNS if name in table.column_names]
    if not present:
        return None, []
    where = f"{path} columns 'expansion_start', 'expansion_end'"
    if len(present) == 1:
        missing = next(name for name in SPAN_COLUMNS if name not in present)
        return None, [Problem(where, "both span columns (the pattern's first and last bar)", f"only {present[0]!r}",
                              f"add {missing!r}, or drop {present[0]!r}")]
    columns = [table[name] for name in SPAN_COLUMNS]
    if not all(pa.types.is_integer(c.type) or pa.types.is_floating(c.type) for c in columns):
        return None, [Problem(where, "integer bar numbers", f"types {[str(c.type) for c in columns]}",
                              "df[c] = pd.to_numeric(df[c]).astype('int64') for both columns")]
    values = np.stack([np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64) for c in columns], 1)  # (N, 2)
    bad = ~np.isfinite(values).all(axis=1) | (values != np.round(values)).any(axis=1)
    if bad.any():
        return None, [Problem(where, "a whole bar number in both columns of every row",
                              f"null, NaN or fractional values in {_rows(bad)}",
                              "fill or drop those rows (every labeled row needs its span), then store them as int64")]
    return values.astype(np.int64), []


def read_windows(path: Path, labeled: bool) -> tuple[WindowTable | None, list[Problem]]:
    """Read a labeled or unlabeled window file; returns the table (or None) and every problem.

    Never raises on the file's contents: what cannot be decoded is a `Problem` naming the column.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            return None, [Problem(str(path), "a parquet file", "a folder (a partitioned dataset?)",
                                  "write one file: pd.read_parquet(folder).to_parquet(path)")]
        return None, [Problem(str(path), "a parquet file", "no such file",
                              "check --data-dir, or run with --demo to use the demo data")]
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 -- pyarrow raises ArrowInvalid, OSError, ArrowTypeError … on bad bytes
        return None, [Problem(str(path), "a readable parquet file", f"{type(exc).__name__}: {exc}",
                              "re-export the file with pandas.DataFrame.to_parquet")]
    try:
        return _decode(path, table, labeled)
    except Exception as exc:  # noqa: BLE001 -- a layout no check above foresaw: still a problem, never a crash
        return None, [Problem(str(path), "windows in the data contract (docs/data.md)",
                              f"a file moola could not decode ({type(exc).__name__}: {exc})",
                              "compare its columns and types with python -m moola demo-data OUT")]


def _decode(path: Path, table: pa.Table, labeled: bool) -> tuple[WindowTable | None, list[Problem]]:
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return None, [Problem(f"{path} column {name!r}", "each column once", f"{names.count(name)} columns named {name!r}",
                              "drop or rename the duplicates before writing") for name in repeated]
    required = ["window_id", FEATURES] + (["label"] if labeled else [])
    missing = [c for c in required if c not in table.column_names]
    if missing:
        return None, [Problem(f"{path} column {c!r}", f"columns {required}",
                              f"columns {table.column_names}", f"add the {c!r} column") for c in missing]
    if table.num_rows == 0:
        return None, [Problem(str(path), "at least one window", "an empty file (0 rows)",
                              "write the windows into it" + ("" if labeled else
                                                             "; see docs/data.md 'The unlabeled pool' for cutting one"))]
    features, problems = decode_features(table[FEATURES], f"{path} column 'features'")
    window_ids, more = _strings(table, "window_id", path, "window_id")
    problems += more
    labels = None
    if labeled:
        labels, more = _strings(table, "label", path, "label")
        problems += more
    timestamps, zoned = None, False
    if "timestamp" in table.column_names:
        zoned = pa.types.is_timestamp(table["timestamp"].type) and table["timestamp"].type.tz is not None
        timestamps, more = decode_timestamps(table["timestamp"], f"{path} column 'timestamp'")
        problems += more
    expansion, more = decode_spans(table, path)
    problems += more
    if features is None or window_ids is None or (labeled and labels is None):
        return None, problems
    return WindowTable(path, window_ids, features, labels, timestamps, zoned=zoned, expansion=expansion), problems


def write_windows(path: Path, table: dict) -> None:
    """Write columns (features as `(N, T, C)` array) to parquet in the contract's nested layout."""
    features = np.asarray(table["features"], dtype=np.float64)
    n, n_bars, n_channels = features.shape
    # (N, T, C) -> list<list<double>> from offsets, no Python loop per row.
    bar_offsets = pa.array(np.arange(0, n * n_bars * n_channels + 1, n_channels, dtype=np.int32))
    bars = pa.ListArray.from_arrays(bar_offsets, pa.array(features.reshape(-1)))  # (N*T,) bars
    window_offsets = pa.array(np.arange(0, n * n_bars + 1, n_bars, dtype=np.int32))
    bar_lists = pa.ListArray.from_arrays(window_offsets, bars)  # (N,) windows
    columns = {k: v for k, v in table.items() if k != "features"}
    arrays = {k: pa.array(v) for k, v in columns.items()}
    arrays[FEATURES] = bar_lists
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(pa.table(arrays), tmp)
    tmp.replace(path)
