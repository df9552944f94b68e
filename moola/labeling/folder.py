"""The data folder a labeling command works on: `--data-dir` or `--demo`, with what the folder
declares about itself (classes, prediction bars), resolved as the gates resolve it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moola.config import DataConfig, Profile
from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.errors import DataContractError, Problem
from moola.data.parquet import WindowTable, read_windows
from moola.data.split import Split, check_split, read_split

NEITHER_FILE = Path("processed/neither_windows.csv")  # pool windows answered neither/skip on the labeling page


@dataclass(frozen=True)
class Folder:
    root: Path
    config: DataConfig
    labeled: WindowTable
    pool: WindowTable
    split: Split
    neither: frozenset = frozenset()  # pool window ids answered neither/skip (NEITHER_FILE)

    @property
    def classes(self) -> tuple:
        return tuple(self.config.classes) or tuple(sorted(set(self.labeled.labels.tolist())))

    @property
    def shared_channels(self) -> bool:
        return self.config.channels == "ohlc"


def resolve_root(data_dir: str | None) -> tuple[Path, Profile]:
    """The data root (`--data-dir`, default `data`) and the profile with the folder's own settings
    (`moola_dataset.json`: classes, prediction bars), as the gates resolve them."""
    from moola.stages.context import resolve_settings

    settings = resolve_settings(Path.cwd(), data_dir=data_dir, artifacts_dir=None, results=None, device="cpu",
                                profile="quick", overrides=[], seed=17, fresh=False, demo="")
    if settings.setup_problems:
        raise ValueError("; ".join(settings.setup_problems))
    refuse_demo_cache(settings.data_root)
    return settings.data_root, settings.profile


DEMO_CACHE = re.compile(r"^demo-(user-)?[0-9a-f]+-seed\d+$")


def refuse_demo_cache(root: Path) -> None:
    """The embedded demo's cache (`ARTIFACTS/demo_data/demo-…`) is what every `--demo` run reads: labels merged
    there would change them all, so the labeling commands work on a copy."""
    root = Path(root).resolve()  # `.` inside the cache, or a link to it, is the cache
    if root.parent.name == "demo_data" and DEMO_CACHE.match(root.name):
        layout = " --layout user-layout" if root.name.startswith("demo-user-") else ""
        raise ValueError(f"--data-dir {root}: expected a data folder of your own, found the embedded demo's cache, "
                         "which every pytest gates --demo run reads. Fix: label a copy: python -m moola demo-data "
                         f"my-data{layout}, then --data-dir my-data (and pytest gates -x --data-dir my-data)")


def read_folder(root: Path, config: DataConfig) -> Folder:
    """The labeled file, the pool and the split; every problem reading them raised at once."""
    labeled, problems = read_windows(root / LABELED, labeled=True)
    pool, more = read_windows(root / UNLABELED, labeled=False)
    split, more_split = read_split(root / SPLIT)
    problems += more + more_split
    if labeled is not None and split is not None:
        problems += check_split(split, len(labeled), None)
    if problems or labeled is None or pool is None or split is None:
        raise DataContractError(problems)
    return Folder(root, config, labeled, pool, split, read_neither(root / NEITHER_FILE))


def read_neither(path: Path) -> frozenset:
    """The window ids of `NEITHER_FILE` (a `window_id` column), or none when the file is absent."""
    if not path.is_file():
        return frozenset()
    import pandas as pd

    try:
        ids = pd.read_csv(path, dtype=str, keep_default_na=False)["window_id"]
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise DataContractError([Problem(str(path), "one column window_id (the windows answered neither)",
                                         f"{type(exc).__name__}: {exc}", "delete the file: label-next then proposes "
                                         "those windows again")]) from None
    return frozenset(ids.str.strip())


def free_pool(folder: Folder) -> np.ndarray:
    """`(n_pool,)` bool: pool windows that are no labeled row, share no run of bars with one, and were not
    answered neither before."""
    from moola.data.validate import pool_leaks

    leaks = pool_leaks(folder.labeled, folder.pool, np.arange(len(folder.labeled)), folder.shared_channels)
    asked = np.isin(folder.pool.window_ids.astype(str), list(folder.neither))
    return ~(leaks["identical"] | leaks["sharing"] | asked)
