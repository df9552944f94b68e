"""The data folder a labeling command works on: `--data-dir` or `--demo`, with what the folder
declares about itself (classes, prediction bars), resolved as the gates resolve it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moola.config import DataConfig, Profile
from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.errors import DataContractError
from moola.data.parquet import WindowTable, read_windows
from moola.data.split import Split, check_split, read_split


@dataclass(frozen=True)
class Folder:
    root: Path
    config: DataConfig
    labeled: WindowTable
    pool: WindowTable
    split: Split

    @property
    def classes(self) -> tuple:
        return tuple(self.config.classes) or tuple(sorted(set(self.labeled.labels.tolist())))

    @property
    def shared_channels(self) -> bool:
        return self.config.channels == "ohlc"


def resolve_root(data_dir: str | None, demo: str | None, artifacts_dir: str = "artifacts") -> tuple[Path, Profile]:
    """The data root and the profile with the folder's own settings: `--data-dir`, or the cached
    `--demo [LAYOUT]` folder."""
    from moola.stages.context import data_root, resolve_settings

    settings = resolve_settings(Path.cwd(), data_dir=data_dir, artifacts_dir=artifacts_dir, results=None,
                                device="cpu", profile="quick", overrides=[], seed=17, fresh=False, demo=demo or "")
    if settings.setup_problems:
        raise ValueError("; ".join(settings.setup_problems))
    return data_root(settings), settings.profile


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
    return Folder(root, config, labeled, pool, split)


def free_pool(folder: Folder) -> np.ndarray:
    """`(n_pool,)` bool: pool windows that are no labeled row and share no bars with one."""
    from moola.data.validate import pool_leaks

    leaks = pool_leaks(folder.labeled, folder.pool, np.arange(len(folder.labeled)), folder.shared_channels)
    return ~(leaks["identical"] | leaks["sharing"])
