"""The pretraining pool on disk: filtered, normalised windows as one `.npy` file, memory-mapped.

Written once by the launching process, in chunks (the normalised pool is never whole in its
memory), and read by every torchrun rank with `np.load(mmap_mode="r")`: the ranks share the
operating system's page cache instead of each holding a copy (2M windows are 3.4 GB as float32).
"""

from __future__ import annotations

import json
import os
import re
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


def pool_path(folder: Path, key: str) -> Path:
    """The pool file of encoder fingerprint `key` in the cache folder."""
    return Path(folder) / f"pool_{key}.npy"


def job_path(folder: Path, key: str) -> Path:
    """The torchrun job file that reads `pool_path(folder, key)`."""
    return Path(folder) / f"encoder_{key}.job.json"


def _key(path: Path, prefix: str, suffix: str) -> str:
    return path.name[len(prefix):-len(suffix)]


def claim_pool(job_path: Path, pid: int) -> None:
    """Mark the pool of `job_path`'s key as in use by process `pid` (torchrun's job file, written in
    full when torchrun starts, keeps the mark): `clear_pool_files` skips it while `pid` lives."""
    job_path = Path(job_path)
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps({"launcher_pid": pid}))


def clear_pool_files(folder: Path, keep: Path | None = None) -> list[Path]:
    """Remove every pool file (and torchrun job file, and killed write) under `folder` but `keep`
    and its job, and but those a live process is using (another run on the same artifacts folder):
    at most one pool outlives a run, the one a failed torchrun left for its rerun. Returns what was
    removed."""
    folder, removed = Path(folder), []
    for job in folder.glob("encoder_*.job.json"):
        pool = pool_path(folder, _key(job, "encoder_", ".job.json"))
        if pool == keep or _alive(_launcher(job)):
            continue
        for path in (pool, job):
            if path.exists():
                path.unlink(missing_ok=True)
                removed.append(path)
    for path in folder.glob("pool_*.npy"):  # a pool with a job file was judged above
        if path != keep and not job_path(folder, _key(path, "pool_", ".npy")).exists():
            path.unlink(missing_ok=True)
            removed.append(path)
    for path in folder.glob(".pool_*.tmp*.npy"):  # a write in progress is its writer's
        owner = re.search(r"\.tmp(\d+)\.npy$", path.name)
        if not (owner and _alive(int(owner.group(1)))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _launcher(job: Path) -> int | None:
    try:
        return int(json.loads(job.read_text()).get("launcher_pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _alive(pid: int | None) -> bool:
    """Whether another process `pid` is running (this process's own files are never "another's")."""
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def open_pool(path: Path) -> np.ndarray:
    """The pool at `path`, memory-mapped read-only."""
    return np.load(Path(path), mmap_mode="r")
