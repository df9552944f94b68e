"""Real data with known signal: UCR/UEA datasets that ship inside sktime, written in the data contract.

Labeled rows are the official TRAIN rows then the TEST rows; the split is train = TRAIN,
val = TEST (so "every train row precedes every val row" holds by row order); the unlabeled pool
is the TRAIN series only, so no val series can leak into pretraining. A `moola_dataset.json`
beside the data says `channels = generic` (any T and C, OHLC checks off) and lists the classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.parquet import write_windows
from moola.data.split import write_json_atomic

DATASETS = {
    "gunpoint": "load_gunpoint",
    "italy_power_demand": "load_italy_power_demand",
    "arrow_head": "load_arrow_head",
    "basic_motions": "load_basic_motions",
    "osuleaf": "load_osuleaf",
    "japanese_vowels": "load_japanese_vowels",
}
META = "moola_dataset.json"


def load_ucr(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TRAIN and TEST windows `(n, T, C)` and labels `(n,)` of an sktime-shipped dataset."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"import-ucr {name}: expected one of {', '.join(DATASETS)}, found {name!r}")
    import sktime.datasets

    loader = getattr(sktime.datasets, DATASETS[key])
    parts = []
    for split in ("train", "test"):
        panel, labels = loader(split=split, return_X_y=True, return_type="numpy3D")  # (n, C, T)
        parts += [np.asarray(panel, dtype=np.float64).transpose(0, 2, 1), np.asarray(labels).astype(str)]  # (n, T, C)
    return parts[0], parts[1], parts[2], parts[3]


def write_ucr(name: str, out_dir: Path) -> dict:
    """Write `name` under `out_dir` in the data contract; returns a summary."""
    out_dir = Path(out_dir)
    train_x, train_y, test_x, test_y = load_ucr(name)
    n_train, n_test = len(train_x), len(test_x)
    write_windows(out_dir / LABELED, {
        "window_id": [f"train_{i}" for i in range(n_train)] + [f"test_{i}" for i in range(n_test)],
        "label": np.concatenate([train_y, test_y]).tolist(),
        "features": np.concatenate([train_x, test_x]),
    })
    write_windows(out_dir / UNLABELED, {"window_id": [f"pool_{i}" for i in range(n_train)], "features": train_x})
    write_json_atomic(out_dir / SPLIT, {"train_indices": list(range(n_train)),
                                        "val_indices": list(range(n_train, n_train + n_test))})
    classes = sorted(set(train_y.tolist()) | set(test_y.tolist()))
    # A UCR archive's published accuracy is on its official split, and its pool is the TRAIN
    # series (all scored under a blocked protocol): the folder asks for the split file.
    meta = {"source": f"sktime.datasets.{DATASETS[name.lower().replace('-', '_')]}", "channels": "generic",
            "classes": classes, "cv": "holdout"}
    (out_dir / META).write_text(json.dumps(meta, indent=1) + "\n")
    return {"n_train": n_train, "n_val": n_test, "window_shape": list(train_x.shape[1:]), **meta}


def dataset_overrides(data_root: Path) -> tuple[list[str], list[str]]:
    """`--set`-style data overrides a folder declares about itself (applied before the user's own),
    and the problems with that file (gate 0 lists them; a run that skips gate 0 stops on them)."""
    path = Path(data_root) / META
    if not path.is_file():
        return [], []
    fix = "rewrite it as python -m moola import-ucr does, e.g. {\"channels\": \"generic\", \"cv\": \"holdout\"}, or delete it"
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        return [], [f"{path}: expected a JSON object, found {type(exc).__name__}: {exc}. Fix: {fix}"]
    if not isinstance(meta, dict):
        return [], [f"{path}: expected a JSON object, found {type(meta).__name__}. Fix: {fix}"]
    overrides, problems = [], []
    unknown = sorted(set(meta) - {"source", "channels", "classes", "cv", "prediction_bars"})
    if unknown:
        problems.append(f"{path}: expected keys among source, channels, classes, cv, prediction_bars, found {unknown}. "
                        f"Fix: {fix}")
    if "prediction_bars" in meta:  # the bars every labeled span lies in, e.g. [30, 74] for the user's layout
        bars = meta["prediction_bars"]
        if isinstance(bars, list) and len(bars) == 2 and all(isinstance(b, int) and not isinstance(b, bool)
                                                              for b in bars) and 0 <= bars[0] <= bars[1]:
            overrides.append(f"data.prediction_bars={bars[0]},{bars[1]}")
        else:
            problems.append(f"{path} key 'prediction_bars': expected [FIRST, LAST] bar numbers, FIRST <= LAST, found "
                            f"{bars!r}. Fix: {fix}")
    for key, setting in (("channels", "data.channels"), ("cv", "evaluation.cv")):
        if key in meta:
            if isinstance(meta[key], str):
                overrides.append(f"{setting}={meta[key]}")
            else:
                problems.append(f"{path} key {key!r}: expected a string, found {meta[key]!r}. Fix: {fix}")
    if "classes" in meta:
        classes = meta["classes"]
        if isinstance(classes, list) and classes and all(isinstance(c, str) and c.strip() for c in classes):
            overrides.append(f"data.classes={','.join(classes)}")
        else:
            problems.append(f"{path} key 'classes': expected a list of class names, found {classes!r}. Fix: {fix}")
    return overrides, problems
