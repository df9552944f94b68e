"""Gate 0: the requested device exists, every file is there, the data contract, split and folds hold."""

from __future__ import annotations

import torch

from moola.data.dataset import check_data
from moola.data.normalize import normalize_windows
from moola.seeding import describe_device, resolve_device
from moola.stages.context import Settings, data_root, protocol_folds, scored_rows, test_rows
from moola.stages.encoder import MIN_POOL, empty_pool_message, filtered_pool


def verify_environment(settings: Settings, data_check: tuple | None = None) -> dict:
    """Every problem found (device and data), the device description and the data summary.

    `data_check`: `check_data`'s result for these settings when already computed (the pytest header).
    """
    problems = []
    device = {"device": settings.requested_device, "memory_gb": None}
    try:
        device = describe_device(resolve_device(settings.requested_device))
    except (RuntimeError, ValueError) as exc:
        problems.append(str(exc))
    root = data_root(settings)
    dataset, data_problems = data_check if data_check is not None else check_data(root, settings.profile.data)
    problems += [str(p) for p in data_problems]
    if dataset is not None and not data_problems:
        windows = normalize_windows(dataset.labeled.features, shared_channels=settings.profile.data.channels == "ohlc")
        folds, fold_problems = protocol_folds(dataset, windows, settings.profile)
        problems += fold_problems  # every fold must be trainable
        if folds:
            scored = scored_rows(folds, test_rows(dataset, settings.profile))
            candidates, counts = filtered_pool(dataset, windows, scored, settings.profile)
            if len(candidates) < MIN_POOL:
                problems.append(empty_pool_message(counts, settings.profile.evaluation.cv))
    return {"problems": problems, "device": device, "cuda_available": torch.cuda.is_available(),
            "data_root": str(root), "data": dataset.summary() if dataset is not None else None}
