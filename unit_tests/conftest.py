"""Small generated datasets in the contract's layout, for fast unit tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moola.data.dataset import LABELED, UNLABELED
from moola.data.demos import write
from moola.data.parquet import write_windows

# pandas registers its pyarrow extension types when its parquet engine is first made. A pytester
# in-process run that makes it first, then restores sys.modules, leaves pyarrow with the types and
# pandas without the module: the next DataFrame.to_parquet in this process then fails with
# "A type extension with name pandas.period already defined". Made once here, before any such run
# (where pandas cannot use this pyarrow, e.g. CI's pyarrow-12 floor check, it never registers them).
try:
    pd.io.parquet.get_engine("pyarrow")
except ImportError:
    pass


def ohlc_windows(rng: np.random.Generator, n: int, n_bars: int = 12, price: float = 20_000.0) -> np.ndarray:
    """Valid OHLC random-walk windows `(n, T, 4)` near `price`."""
    close = price * np.exp(np.cumsum(rng.normal(0, 1e-3, (n, n_bars)), axis=1))
    open_ = np.concatenate([np.full((n, 1), price), close[:, :-1]], axis=1)
    high = np.maximum(open_, close) + rng.uniform(0.25, 2.0, (n, n_bars))
    low = np.minimum(open_, close) - rng.uniform(0.25, 2.0, (n, n_bars))
    return np.stack([open_, high, low, close], axis=-1)


class DataFolder:
    """Writes a valid small dataset, then lets a test break one thing."""

    def __init__(self, root: Path, seed: int = 0, n_labeled: int = 20, n_unlabeled: int = 30):
        rng = np.random.default_rng(seed)
        self.root = root
        self.labeled = {
            "window_id": [f"{i}_exp_1" for i in range(n_labeled)],
            "label": ["consolidation", "retracement"] * (n_labeled // 2),
            "timestamp": pd.date_range("2024-01-01", periods=n_labeled, freq="h").values,
            "features": ohlc_windows(rng, n_labeled),
        }
        self.unlabeled = {"window_id": [f"u{i}" for i in range(n_unlabeled)],
                          "features": ohlc_windows(rng, n_unlabeled)}
        n_train = int(n_labeled * 0.7)
        self.split = {"train_indices": list(range(n_train)), "val_indices": list(range(n_train, n_labeled))}

    def write(self) -> Path:
        write_windows(self.root / "processed/train_clean.parquet", self.labeled)
        write_windows(self.root / "raw/unlabeled_windows.parquet", self.unlabeled)
        path = self.root / "artifacts/splits/v1/fold_0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.split))
        return self.root


@pytest.fixture
def data_folder(tmp_path) -> DataFolder:
    return DataFolder(tmp_path / "data")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run tests marked slow (fault injection through the real gate suite, GunPoint)")


# The project's own tests treat every warning as an error (a deprecation we call today breaks on
# the next release), except: GateWarning, which advisory gates raise by design; and torch 2.1's
# TypedStorage deprecation, which its own weights-only unpickler triggers on every torch.load,
# whoever calls it. Later arguments take precedence.
STRICT_WARNINGS = pytest.mark.filterwarnings(
    "error",
    "ignore:TypedStorage is deprecated:UserWarning",
    "always::moola.results.GateWarning",
)
UNIT_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="slow: run with pytest unit_tests --run-slow -m slow")
    for item in items:
        if UNIT_TESTS in item.path.parents:
            item.add_marker(STRICT_WARNINGS)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip)


def small_copy(source: Path, out: Path, keep: np.ndarray) -> Path:
    """A copy of `source` whose pool holds only the windows `keep` (in the pool's order)."""
    shutil.copytree(source, out)
    pool = pd.read_parquet(source / UNLABELED)
    pool = pool.iloc[np.sort(keep)]
    write_windows(out / UNLABELED, {**{c: pool[c].to_numpy() for c in pool.columns if c != "features"},
                                    "features": np.stack([np.stack(f) for f in pool["features"]])})
    return out


@pytest.fixture(scope="session")
def user_layout_small(tmp_path_factory) -> Path:
    """The user-layout demo with the pool cut to the 7 windows around each labeled one, and 3 further on
    that share no bars with it (~600 windows)."""
    full = write("user-layout", tmp_path_factory.mktemp("user") / "full")
    ids = pd.read_parquet(full / LABELED, columns=["window_id"])["window_id"]
    bases = np.unique([int(i.split("_")[0]) for i in ids])  # pool window `base` starts at bar 10 * base
    keep = np.unique(np.clip((bases[:, None] + np.array([-3, -2, -1, 0, 1, 2, 3, 15, 16, 30])).ravel(), 0, None))
    return small_copy(full, tmp_path_factory.mktemp("user") / "small", keep)
