"""Gate 0: the requested device exists, every file is there, the data contract, split and folds hold."""

from __future__ import annotations

import numpy as np
import torch

from moola.config import Profile
from moola.data.dataset import UNLABELED, check_data
from moola.data.inputs import resolve_spec
from moola.data.labels import conflict_warning, order_problem
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
    problems, warnings, notes = list(settings.setup_problems), [], []
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
        data_check = check_data(root, settings.profile.data, settings.profile.evaluation.cv)
    else:
        root = data_check[0].root if data_check[0] is not None else settings.data_root
    dataset, data_problems = data_check
    problems += [str(p) for p in data_problems]
    if dataset is not None and not data_problems:
        try:
            more, warnings, notes = _protocol_problems(dataset, settings.profile)
            problems += more
        except Exception as exc:  # noqa: BLE001 -- gate 0 answers with a problem, never a crash
            problems.append(f"{root}: the folds or the pool could not be built ({type(exc).__name__}: {exc})")
        warnings = label_warnings(dataset, settings.profile) + warnings
        notes = [*label_notes(dataset, settings.profile), *dataset.notes, *notes]
    return {"problems": problems, "warnings": warnings, "notes": notes, "device": device,
            "cuda_available": torch.cuda.is_available(), "data_root": str(root),
            "data": dataset.summary() if dataset is not None else None,
            "labels": dataset.audit.summary() if dataset is not None and dataset.audit is not None else None}


def label_notes(dataset, profile: Profile) -> list[str]:
    """What the labeled rows are: rows against distinct windows, spans, row order, and the bars the
    models see after each labeled span (what a live prediction at the span's end would not have)."""
    audit, labeled = dataset.audit, dataset.labeled
    if audit is None:
        return []
    notes = [(f"{labeled.path}: {audit.n_rows} labeled rows from {audit.n_windows} distinct windows (the effective "
              f"n: rows of one window are one draw of the market); {audit.duplicates} row(s) repeat another row's "
              f"window, span and label; {audit.multi_span_windows} window(s) labeled on more than one span; "
              f"{audit.mixed_label_windows} window(s) whose rows carry different classes; {audit.order}")]
    if labeled.expansion is not None:
        notes.append(decision_point_note(labeled, profile))
    return notes


def decision_point_note(labeled, profile: Profile) -> str:
    """How many bars after each labeled span the classifiers read (`data.visible_bars`), and what it means live."""
    spec = resolve_spec(profile.data, labeled.expansion)
    n_bars = labeled.features.shape[1]
    span = "; the labeled span is an input channel" if spec.span_channel else ""
    if spec.span_bars:
        return (f"the classifiers read the {spec.span_bars} bars ending at each labeled span's last bar "
                f"(data.span_bars={spec.span_bars}): no bar after the span, as a live prediction made at its end{span}")
    read = spec.bars(n_bars)
    after = np.maximum(read - 1 - labeled.expansion[:, 1], 0)  # (N,) bars read after each span's last bar
    seen = (f"{int(after.min())}" if after.min() == after.max() else
            f"{int(after.min())}–{int(after.max())} (median {int(np.median(after))})")
    which = (f"the whole {n_bars}-bar window" if read == n_bars else
             f"bars 0..{read - 1} of each {n_bars}-bar window (data.visible_bars={read})")
    if not after.max():
        return f"the classifiers read {which}: no bar after any labeled span's last bar{span}"
    return (f"the classifiers read {which}: {seen} bars after each labeled span's last bar{span}. A live "
            "prediction made at the end of the span does not have those bars: its verdicts hold for windows "
            f"observed up to bar {read - 1} (--set data.visible_bars=N moves the decision point)")


def label_warnings(dataset, profile: Profile) -> list[str]:
    """Label conflicts, span-blind inputs with two answers, and row order the data contradict (blocked)."""
    audit, labeled = dataset.audit, dataset.labeled
    if audit is None:
        return []
    warnings = [w for w in [conflict_warning(labeled, audit)] if w]
    if audit.mixed_label_windows > len(audit.conflicts) and not resolve_spec(profile.data, labeled.expansion).needs_spans:
        warnings.append(f"{labeled.path}: {audit.mixed_label_windows} window(s) carry rows of different classes "
                        "on different spans, and the models read the whole window, not the span: to them each such "
                        "window is one input with two answers (the effective n counts it once; the defaults "
                        "data.span_input=true and data.span_bars=-1 let them read the span)")
    disorder = order_problem(labeled, audit)
    if disorder is not None and profile.evaluation.cv == "blocked":  # the other protocols refuse it
        warnings.append(f"{disorder} (--cv blocked purges windows sharing bars, but its blocks and embargo "
                        "follow row order)")
    return warnings


def _protocol_problems(dataset, profile: Profile) -> tuple[list, list, list]:
    windows = normalize_windows(dataset.labeled.features, shared_channels=profile.data.channels == "ohlc")
    folds, problems = protocol_folds(dataset, windows, profile)  # every fold must be trainable
    warnings, notes = [], []
    if folds:
        scored = scored_rows(folds, test_rows(dataset, profile))
        candidates, counts = filtered_pool(dataset, windows, scored, profile)
        if len(candidates) < MIN_POOL:
            problems.append(empty_pool_message(counts, profile.evaluation.cv))
        else:
            small = small_pool_warning(len(candidates), windows.shape[1:], profile, dataset.unlabeled.path)
            warnings += [small] if small else []
        dropped = counts["pool"] - counts["kept"]
        if dropped:
            notes.append(f"{dataset.unlabeled.path}: gate 3 leaves {dropped} of {counts['pool']} pool windows out of "
                         f"pretraining ({counts['identical_to_scored']} identical to and "
                         f"{counts['overlapping_scored'] + counts['sharing_bars_with_scored']} sharing bars with the "
                         f"{len(scored)} labeled rows --cv {profile.evaluation.cv} scores); {counts['kept']} remain")
        purged = [len(fold.purged) for fold in folds]
        if profile.evaluation.cv != "holdout" and any(purged):
            notes.append(f"folds: {sum(purged)} train row(s) purged in all ({', '.join(map(str, purged))} per fold: "
                         "the embargo, and rows identical to or sharing bars with the scored block)")
    return problems, warnings, notes
