"""Vectorised parquet decoding: a nested `features` list column to one float32 `(N, T, C)` array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moola.data.errors import Problem

FEATURES = "features"


@dataclass(frozen=True)
class WindowTable:
    """Decoded windows of one parquet file."""

    path: Path
    window_ids: np.ndarray  # (N,) object of str
    features: np.ndarray  # (N, T, C) float32
    labels: np.ndarray | None = None  # (N,) object of str; labeled files only
    timestamps: np.ndarray | None = None  # (N,) datetime64[ns]; when the file has them
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
    channel_counts = np.asarray(pc.list_value_length(bars))  # (sum T_i,) floats per bar
    if n == 0:
        return np.zeros((0, 0, 0), np.float32), problems
    n_bars, n_channels = int(np.median(bar_counts)), int(np.median(channel_counts))
    bad_rows = bar_counts != n_bars
    if bad_rows.any():
        problems.append(Problem(where, f"every window with the same number of bars ({n_bars})",
                                f"other lengths in {_rows(bad_rows)}", "cut or drop the ragged windows"))
    bad_bars = channel_counts != n_channels
    if bad_bars.any():
        row_of_bar = np.repeat(np.arange(n), bar_counts)  # (sum T_i,) owning row of each bar
        bad = np.zeros(n, bool)
        bad[row_of_bar[bad_bars]] = True
        problems.append(Problem(where, f"every bar with {n_channels} values",
                                f"other bar widths in {_rows(bad)}", "fix the bars of those rows"))
    if problems:
        return None, problems
    values = bars.flatten()
    if values.null_count:
        problems.append(Problem(where, "no null values inside windows", f"{values.null_count} nulls",
                                "fill or drop those windows"))
        return None, problems
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    features = flat.reshape(n, n_bars, n_channels)  # (N * T * C,) -> (N, T, C)
    finite = np.isfinite(features).all(axis=(1, 2))
    if not finite.all():
        problems.append(Problem(where, "finite values", f"NaN or inf in {_rows(~finite)}",
                                "drop those windows or fill the gaps before export"))
    return features, problems


def read_windows(path: Path, labeled: bool) -> tuple[WindowTable | None, list[Problem]]:
    """Read a labeled or unlabeled window file; returns the table (or None) and every problem."""
    path = Path(path)
    if not path.is_file():
        return None, [Problem(str(path), "a parquet file", "no such file",
                              "check --data-dir, or run with --demo to use the demo data")]
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        return None, [Problem(str(path), "a readable parquet file", f"{type(exc).__name__}: {exc}",
                              "re-export the file with pandas.DataFrame.to_parquet")]
    required = ["window_id", FEATURES] + (["label"] if labeled else [])
    missing = [c for c in required if c not in table.column_names]
    if missing:
        return None, [Problem(f"{path} column {c!r}", f"columns {required}",
                              f"columns {table.column_names}", f"add the {c!r} column") for c in missing]
    features, problems = decode_features(table[FEATURES], f"{path} column 'features'")
    window_ids = np.asarray(table["window_id"].cast(pa.string()).to_pylist(), dtype=object)
    labels = None
    if labeled:
        labels = np.asarray(table["label"].cast(pa.string()).to_pylist(), dtype=object)
        if any(label is None for label in labels):
            problems.append(Problem(f"{path} column 'label'", "a label in every row",
                                    f"null in {_rows(np.array([x is None for x in labels]))}",
                                    "label or drop those rows"))
    timestamps = None
    if "timestamp" in table.column_names:
        timestamps = np.asarray(table["timestamp"].to_pandas(), dtype="datetime64[ns]")
    expansion = None
    if "expansion_start" in table.column_names and "expansion_end" in table.column_names:
        expansion = np.stack([table["expansion_start"].to_numpy(), table["expansion_end"].to_numpy()], 1)
    if features is None:
        return None, problems
    return WindowTable(path, window_ids, features, labels, timestamps, expansion), problems


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
