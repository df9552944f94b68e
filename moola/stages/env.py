"""Gate 0: the requested device exists, every file is there, the data contract, split and folds hold."""

from __future__ import annotations

import torch

from moola.config import Profile
from moola.data.dataset import UNLABELED, check_data
from moola.data.normalize import normalize_windows
from moola.models.encoder import BiLSTMEncoder
from moola.seeding import describe_device, resolve_device
from moola.stages.context import Settings, data_root, protocol_folds, scored_rows, test_rows
from moola.stages.encoder import MIN_POOL, check_devices, empty_pool_message, filtered_pool


def encoder_parameters(n_channels: int, profile: Profile) -> int:
    config = profile.pretrain
    return sum(p.numel() for p in BiLSTMEncoder(n_channels, config.hidden_size, config.num_layers).parameters())


def small_pool_warning(n_pool: int, window_shape: tuple, profile: Profile, path=UNLABELED) -> str | None:
    """Why a pool this small cannot pretrain the encoder: it holds fewer values than the encoder has weights.

    A pool of N windows of T × C values holds N·T·C numbers; an encoder with more parameters than
    that can memorise the pool instead of learning bar structure, and its early stopping judges
    on `val_fraction` of an already small set.
    """
    used = min(n_pool, profile.pretrain.max_unlabeled or n_pool)
    n_bars, n_channels = window_shape
    weights = encoder_parameters(n_channels, profile)
    if used * n_bars * n_channels >= weights:
        return None
    needed = -(-weights // (n_bars * n_channels))
    return (f"{path}: pretraining would use {used} pool window(s) ({used * n_bars * n_channels:,} values), fewer "
            f"values than the encoder's {weights:,} parameters (hidden {profile.pretrain.hidden_size}, "
            f"{profile.pretrain.num_layers} layers): it can memorise the pool instead of learning bar structure. "
            f"Add windows ({needed:,} or more in all; docs/data.md 'The unlabeled pool' cuts them from bars); gate 3's probe "
            "and reconstruction checks judge the result")


def verify_environment(settings: Settings, data_check: tuple | None = None) -> dict:
    """Every problem found (device and data), advisory warnings, the device and the data summary.

    `data_check`: `check_data`'s result for these settings when already computed (the pytest header).
    """
    problems, warnings = list(settings.setup_problems), []
    device = {"device": settings.requested_device, "memory_gb": None}
    try:
        resolved = resolve_device(settings.requested_device)
        device = describe_device(resolved)
        if settings.profile.pretrain.devices > 1:  # --nproc: fail here, not after gates 1-2 trained
            check_devices(resolved, settings.profile.pretrain.devices)
    except (RuntimeError, ValueError) as exc:
        problems.append(str(exc))
    if data_check is None:
        root = data_root(settings)
        data_check = check_data(root, settings.profile.data)
    else:
        root = data_check[0].root if data_check[0] is not None else settings.data_root
    dataset, data_problems = data_check
    problems += [str(p) for p in data_problems]
    if dataset is not None and not data_problems:
        try:
            more, warnings = _protocol_problems(dataset, settings.profile)
            problems += more
        except Exception as exc:  # noqa: BLE001 -- gate 0 answers with a problem, never a crash
            problems.append(f"{root}: the folds or the pool could not be built ({type(exc).__name__}: {exc})")
    return {"problems": problems, "warnings": warnings, "device": device, "cuda_available": torch.cuda.is_available(),
            "data_root": str(root), "data": dataset.summary() if dataset is not None else None}


def _protocol_problems(dataset, profile: Profile) -> tuple[list, list]:
    windows = normalize_windows(dataset.labeled.features, shared_channels=profile.data.channels == "ohlc")
    folds, problems = protocol_folds(dataset, windows, profile)  # every fold must be trainable
    warnings = []
    if folds:
        scored = scored_rows(folds, test_rows(dataset, profile))
        candidates, counts = filtered_pool(dataset, windows, scored, profile)
        if len(candidates) < MIN_POOL:
            problems.append(empty_pool_message(counts, profile.evaluation.cv))
        else:
            small = small_pool_warning(len(candidates), windows.shape[1:], profile, dataset.unlabeled.path)
            warnings += [small] if small else []
    return problems, warnings
