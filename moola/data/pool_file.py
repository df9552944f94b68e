"""The pretraining pool on disk: filtered, normalised windows as one `.npy` file, memory-mapped.

Written once by the launching process, in chunks (the normalised pool is never whole in its
memory), and read by every torchrun rank with `np.load(mmap_mode="r")`: the ranks share the
operating system's page cache instead of each holding a copy (2M windows are 3.4 GB as float32).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

CHUNK = 65_536  # windows normalised at a time (~110 MB of float32 at 105 x 4)


def write_pool(path: Path, raw: np.ndarray, rows: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray]) -> Path:
    """`normalize(raw[rows])` into `path` (`.npy`), chunk by chunk; kept when already complete.

    The file appears only once fully written (a temp file renamed over it), so a file at `path`
    is complete: a rerun after a kill reuses it. `path`'s name carries the encoder fingerprint,
    which covers the rows and the data, so one that exists holds these windows.
    """
    path = Path(path)
    shape = (len(rows),) + tuple(raw.shape[1:])
    if path.is_file():
        existing = np.load(path, mmap_mode="r")
        if existing.shape == shape and existing.dtype == np.float32:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.tmp*.npy"):  # a killed write's (up to the pool's size)
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    for begin in range(0, len(rows), CHUNK):
        out[begin: begin + CHUNK] = normalize(raw[rows[begin: begin + CHUNK]])
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def clear_pool_files(folder: Path, keep: Path | None = None) -> list[Path]:
    """Remove every pool file (and torchrun job file, and killed write) under `folder` but `keep`
    and its job: at most one pool outlives a run, the one a failed torchrun left for its rerun.
    Returns what was removed."""
    folder, removed = Path(folder), []
    keep_job = None if keep is None else keep.with_name(keep.name.replace("pool_", "encoder_", 1).replace(".npy", ".job.json"))
    for pattern in ("pool_*.npy", ".pool_*.tmp*.npy", "encoder_*.job.json"):
        for path in folder.glob(pattern):
            if path in (keep, keep_job):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def open_pool(path: Path) -> np.ndarray:
    """The pool at `path`, memory-mapped read-only."""
    return np.load(Path(path), mmap_mode="r")
