"""The shared encoder: from the artifact cache when its fingerprint matches, else pretrained now."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from moola import artifacts
from moola.config import Profile, to_dict
from moola.data import normalize
from moola.data.dataset import UNLABELED, Dataset, fingerprint
from moola.data.normalize import normalize_windows
from moola.data.pool_file import CHUNK, claim_pool, clear_pool_files, job_path, pool_path, write_pool
from moola.evaluation.pool import pool_filter
from moola.models import encoder as encoder_module
from moola.models import masked_autoencoder
from moola.models.encoder import BiLSTMEncoder
from moola.results import jsonable, versions
from moola.seeding import machine
from moola.stages.context import RunContext, scored_rows
from moola.training import launch, masking, pretrain
from moola.training.probe import encoder_features, probe_predict

log = logging.getLogger(__name__)


@dataclass
class EncoderOutcome:
    state: dict  # encoder state dict (CPU)
    autoencoder_state: dict  # the whole masked autoencoder (encoder, mask token, decoder)
    source: str  # "cache" or "trained"
    fingerprint: str  # data + pretrain config + code version
    path: Path  # the seed's path, pretrained/encoder_v1.pt: a copy of the encoder this run used
    metadata: dict  # history, best epoch, steps, pool size …
    duration_s: float  # time spent obtaining it in this run
    entry: Path | None = None  # its cache entry, pretrained/cache/encoder_<fingerprint>.pt
    pool_filter: dict | None = None  # pool windows dropped because a gate scores them (or shares their bars)
    record: dict = field(default_factory=dict)  # gate 3's line fields (`encoder_record`)
    record_error: str | None = None  # why `encoder_record` raised in the shared fixture (gate 3 raises it again)

    def __repr__(self) -> str:  # pytest prints a failing gate's arguments: one line, not every tensor
        return f"EncoderOutcome({self.source}, fingerprint {self.fingerprint}, {self.duration_s:.1f} s)"

    @property
    def pretrain_s(self) -> float | None:
        """What the pretraining cost when it ran (this run, or the run that filled the cache), in
        device-seconds (`pretrain_cost`); encoders saved before it: the last part's wall seconds."""
        return (self.metadata.get("pretrain_cost") or {}).get("device_s", self.metadata.get("pretrain_duration_s"))


def pretrain_cost(wall_s: float, devices: int, device: torch.device, earlier_wall_s: float = 0.0,
                  earlier_device_s: float = 0.0) -> dict:
    """Pretraining's cost, comparable across resumes and `--nproc` (`protocol.COST_UNIT`): this part's
    wall seconds times its devices, plus what the earlier, killed parts used (to their last saved
    epoch; each on its own device count), and what ran the last part."""
    return {"wall_s": wall_s + earlier_wall_s, "devices": devices, "device_s": wall_s * devices + earlier_device_s,
            "machine": machine(device, devices)}


def encoder_fingerprint(ctx: RunContext, pool_rows: np.ndarray) -> str:
    pool = ctx.dataset.unlabeled.features[pool_rows]
    return artifacts.cache_key(
        # `devices` left out: N ranks compute what one process computes (moola.training.pretrain)
        data=fingerprint(pool), pretrain={k: v for k, v in to_dict(ctx.profile.pretrain).items() if k != "devices"},
        seed=ctx.seed,
        channels=ctx.profile.data.channels,
        code=artifacts.code_version(pretrain, masking, encoder_module, masked_autoencoder, normalize),
    )


def filtered_pool(dataset: Dataset, windows: np.ndarray, scored: np.ndarray, profile: Profile) -> tuple[np.ndarray, dict]:
    """Pool rows free of the `scored` labeled rows: none identical after normalisation, none sharing
    a run of bars with one (from the prices) and, when both tables have timestamps, none
    overlapping in time. Returns (candidate rows, counts)."""
    unlabeled, labeled = dataset.unlabeled, dataset.labeled
    span = np.timedelta64(windows.shape[1] * profile.data.bar_seconds, "s")
    times = labeled.timestamps[scored] if labeled.timestamps is not None else None
    keep, counts = [], {}
    for begin in range(0, len(unlabeled.features), CHUNK):  # the normalised pool is never whole in memory
        part = slice(begin, begin + CHUNK)
        pool = normalize_windows(unlabeled.features[part], shared_channels=profile.data.channels == "ohlc")
        kept, found = pool_filter(pool, windows[scored], scored_times=times, span=span, scored_raw=labeled.features[scored],
                                  pool_times=None if unlabeled.timestamps is None else unlabeled.timestamps[part],
                                  pool_raw=unlabeled.features[part])
        keep.append(kept)
        counts = {key: counts.get(key, 0) + value for key, value in found.items()}
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=bool)
    if not counts:  # an empty pool
        counts = pool_filter(np.zeros((0, *windows.shape[1:])), windows[scored])[1]
    if labeled.timestamps is None or unlabeled.timestamps is None:
        counts["overlap_check"] = ("prices only (shared runs of bars): the labeled or the unlabeled file has "
                                   "no timestamp column")
    return np.flatnonzero(keep), {**counts, "scored_rows": len(scored)}


def pretraining_pool(ctx: RunContext) -> tuple[np.ndarray, dict]:
    """Pool rows the encoder pretrains on: `filtered_pool`, then `max_unlabeled` of them (seeded)."""
    candidates, counts = filtered_pool(ctx.dataset, ctx.windows, scored_rows(ctx.folds, ctx.test), ctx.profile)
    if len(candidates) < MIN_POOL:
        raise ValueError(empty_pool_message(counts, ctx.profile.evaluation.cv))
    rows = candidates[pretrain.subsample_pool(len(candidates), ctx.profile.pretrain, ctx.seed)]
    return rows, {**counts, "used": len(rows)}


def clear_pools(folder: Path, keep: Path | None = None) -> None:
    """A failed torchrun's pool file (GBs at the user's scale) outlives its run only for the rerun
    that reuses it (`keep`); any other is removed."""
    for path in clear_pool_files(folder, keep):
        log.info("removed %s: left by an earlier run, and this one does not use it", path)


MIN_POOL = 2  # pretraining holds some windows out for early stopping and trains on the rest


def empty_pool_message(counts: dict, cv: str) -> str:
    fix = "" if cv == "holdout" else ", or use --cv holdout (then only the split's val and test rows are scored)"
    return (f"{UNLABELED}: {counts['kept']} pool window(s) left to pretrain on, expected at least {MIN_POOL}: "
            f"{counts['identical_to_scored']} of {counts['pool']} are identical to and "
            f"{counts['overlapping_scored'] + counts.get('sharing_bars_with_scored', 0)} share bars with a labeled row that --cv {cv} scores (the pretraining pool must never hold a scored window). "
            f"Add unlabeled windows cut from other bars{fix}")


def cache_entry(ctx: RunContext, key: str) -> Path:
    """Where the encoder of fingerprint `key` is kept: one file per fingerprint, never evicted."""
    return ctx.settings.artifacts_dir / artifacts.ENCODER_CACHE / f"encoder_{key}.pt"


def obtain_encoder(ctx: RunContext) -> EncoderOutcome:
    """The cached encoder of this fingerprint (unless --fresh), else pretrain and save one.

    The cache holds one file per fingerprint under `pretrained/cache/`, so alternating datasets or
    profiles never retrains; `pretrained/encoder_v1.pt` (the seed's path) is a copy of the latest
    run's encoder, and is still read as a cache entry (caches written before the per-fingerprint
    layout). An unreadable entry is moved aside and retrained (`artifacts.load_cached`).
    """
    started = time.monotonic()
    config = ctx.profile.pretrain
    pool_rows, filtered = pretraining_pool(ctx)
    dropped = filtered["pool"] - filtered["kept"]
    if dropped:
        log.info("pretraining pool: %d windows identical to or sharing bars with scored labeled windows left out",
                 dropped)
    key = encoder_fingerprint(ctx, pool_rows)
    entry, latest = cache_entry(ctx, key), ctx.settings.artifacts_dir / artifacts.ENCODER
    if not ctx.settings.fresh:
        for path in (entry, latest):
            payload = artifacts.load_cached(path)
            if payload is None:
                continue
            state, metadata = artifacts.load_checkpoint_payload(payload)
            if metadata.get("fingerprint") != key:
                log.info("cached encoder %s has fingerprint %s, need %s", path, metadata.get("fingerprint"), key)
                continue
            log.info("encoder from cache %s (fingerprint %s)", path, key)
            if path != entry:
                artifacts.copy_atomic(path, entry)
            clear_pools(entry.parent)
            publish_latest(entry, latest, key, ctx.settings.fresh)
            return EncoderOutcome(pretrain.encoder_part(state), state, "cache", key, latest, metadata,
                                  time.monotonic() - started, entry, filtered)
    resume = entry.with_name(entry.stem + ".resume.pt")  # per-epoch state: a killed run continues here
    if ctx.settings.fresh:
        resume.unlink(missing_ok=True)
        read_replaceable(entry, fresh=True)  # a refused entry is set aside, not silently overwritten
    before = untrained_metadata(ctx, key, filtered)
    clear_pools(entry.parent, pool_path(entry.parent, key) if config.devices > 1 else None)
    if config.devices > 1:
        model_state, metadata = pretrain_distributed(ctx, pool_rows, key, entry, resume, before)
    else:
        windows = ctx.normalize(ctx.dataset.unlabeled.features[pool_rows])
        result = pretrain.pretrain_encoder(windows, config, ctx.device, ctx.seed, checkpoint=resume, fingerprint=key,
                                           keep_checkpoint=True)
        model_state = result.model_state
        metadata = {**before, **result.fields(), "distributed": {
            "launcher": "in-process", "devices": 1, "world_size": 1, "backend": None, "device_type": ctx.device.type,
            "global_batch": config.batch_size, "rank_batch": config.batch_size}}
    metadata["pretrain_duration_s"] = time.monotonic() - started
    metadata["pretrain_cost"] = pretrain_cost(metadata["pretrain_duration_s"], config.devices, ctx.device,
                                              float(metadata.get("earlier_parts_s") or 0),
                                              float(metadata.get("earlier_parts_device_s") or 0))
    # The whole autoencoder is saved (keys "encoder.*", "mask_token", "decoder.*"): gate 3 also
    # checks its reconstructions; classifiers load the "encoder.*" part.
    artifacts.save_checkpoint(entry, model_state, metadata)
    resume.unlink(missing_ok=True)  # only now: a kill before the save still resumes
    publish_latest(entry, latest, key, ctx.settings.fresh)
    return EncoderOutcome(pretrain.encoder_part(model_state), model_state, "trained", key, latest, metadata,
                          time.monotonic() - started, entry, filtered)


def untrained_metadata(ctx: RunContext, key: str, filtered: dict) -> dict:
    """The encoder file's metadata known before training: fingerprint, config, pool, architecture, input."""
    config, shape = ctx.profile.pretrain, ctx.dataset.unlabeled.features.shape[1:]
    return {"fingerprint": key, "config": to_dict(config), "pool_filter": filtered, "seed": ctx.seed,
            "data_fingerprint": ctx.dataset.fingerprint,
            "architecture": {"class": "MaskedAutoencoder", "args": {"n_channels": int(shape[1]),
                                                                   "hidden_size": config.hidden_size,
                                                                   "num_layers": config.num_layers}},
            "input": {"window_shape": list(shape), "channels": ctx.profile.data.channels,
                      "shared_channels": ctx.shared_channels,
                      "normalisation": "per-window z-score, " + ("one mean and std shared by the channels (OHLC)"
                                                                 if ctx.shared_channels else "per channel")},
            "versions": versions()}


def check_devices(device: torch.device, devices: int) -> None:
    """`pretrain.devices` > 1 needs that many CUDA devices, or the CPU; MPS has no process-group backend."""
    if device.type == "cuda" and devices > torch.cuda.device_count():
        raise ValueError(f"--set pretrain.devices={devices} (--nproc): expected at most the {torch.cuda.device_count()} "
                         f"CUDA device(s) this machine shows, found {devices}. Use --nproc {torch.cuda.device_count()}, "
                         "or check CUDA_VISIBLE_DEVICES")
    if device.type == "mps":
        raise ValueError(f"--set pretrain.devices={devices} (--nproc): distributed pretraining runs on CUDA (nccl) or "
                         "the CPU (gloo), not on MPS. Use --nproc 1 on a Mac, or --device cpu")


def pretrain_distributed(ctx: RunContext, pool_rows: np.ndarray, key: str, entry: Path, resume: Path,
                         metadata: dict) -> tuple[dict, dict]:
    """Pretrain on `pretrain.devices` torchrun ranks; rank 0 writes `entry`, read back here.

    The filtered, normalised pool is written once to `pool_<key>.npy` beside the entry (kept for
    a rerun after a kill, removed once the encoder is saved) and memory-mapped by every rank.
    """
    config = ctx.profile.pretrain
    check_devices(ctx.device, config.devices)
    job_file = job_path(entry.parent, key)
    claim_pool(job_file, os.getpid())  # another run's cleanup leaves this pool alone while this process lives
    pool = write_pool(pool_path(entry.parent, key), ctx.dataset.unlabeled.features, pool_rows, ctx.normalize)
    # The ranks replace `entry` atomically; the token tells their file from one there before (--fresh)
    token = uuid.uuid4().hex
    job = {"pool": str(pool), "config": to_dict(config), "seed": ctx.seed, "fingerprint": key,
           "checkpoint": str(resume), "entry": str(entry), "metadata": {**metadata, "launch_token": token},
           "device": ctx.device.type, "deterministic": ctx.profile.runtime.deterministic, "launcher_pid": os.getpid()}
    log_file = entry.with_name(f"encoder_{key}.torchrun.log")
    launch.run(jsonable(job), config.devices, job_file, log_file)
    payload = artifacts.load_cached(entry)
    state, saved = artifacts.load_checkpoint_payload(payload) if payload is not None else ({}, {})
    if saved.get("launch_token") != token:
        raise RuntimeError(f"distributed pretraining exited 0 but wrote no encoder at {entry} (see "
                           f"{log_file})")
    pool.unlink(missing_ok=True)
    job_file.unlink(missing_ok=True)
    return state, saved


def read_replaceable(path: Path, fresh: bool):
    """`load_cached(path)`; under `fresh`, a refused file is moved aside as `.refused` (never loaded)."""
    try:
        return artifacts.load_cached(path)
    except artifacts.CheckpointRefused as refused:
        if not fresh:
            raise
        artifacts.set_aside(path, f"{refused} (--fresh: replaced, never loaded)", suffix="refused")
        return None


def publish_latest(entry: Path, latest: Path, key: str, fresh: bool = False) -> None:
    """Make the seed's path a copy of `entry` unless it already holds that fingerprint.

    What is there first goes through `load_cached`: a foreign file (say, an encoder from an older
    workflow) is moved aside rather than overwritten; a moola encoder of another fingerprint
    that the cache lacks (written before the per-fingerprint layout) joins the cache first, so
    upgrading never evicts it; a code-executing one stops the run, unless `fresh` (the fix its
    message gives), which moves it aside as `.refused` without loading it.
    """
    payload = read_replaceable(latest, fresh)
    if payload is not None:
        fingerprint = artifacts.load_checkpoint_payload(payload)[1].get("fingerprint")
        if fingerprint == key and not fresh:
            return
        older = entry.with_name(f"encoder_{fingerprint}.pt")
        if fingerprint and not older.exists():
            artifacts.copy_atomic(latest, older)
    artifacts.copy_atomic(entry, latest)


def build_encoder(ctx: RunContext, state: dict | None) -> BiLSTMEncoder:
    config = ctx.profile.pretrain
    torch.manual_seed(ctx.seed)
    model = BiLSTMEncoder(ctx.windows.shape[2], config.hidden_size, config.num_layers).to(ctx.device)
    if state is not None:
        model.load_state_dict(state)
    return model


def encoder_record(ctx: RunContext, outcome: EncoderOutcome) -> dict:
    """Gate 3's line fields (model, config, metrics, comparison, extra, artifacts): the probe and the
    reconstruction check of this encoder, its pretraining curves, time and pool."""
    started = time.monotonic()
    scores = {**probe(ctx, outcome.state), **reconstruction_check(ctx, outcome.autoencoder_state)}
    meta = outcome.metadata
    resumed = meta.get("resumed_from_epoch", 0)
    # how it was trained: in this process, or on torchrun ranks (files written before either: unknown)
    distributed = meta.get("distributed") or {}
    return {
        "model": "bilstm_masked_autoencoder", "config": dataclasses.asdict(ctx.profile.pretrain),
        "metrics": {**scores, "best_epoch": meta.get("best_epoch"), "best_val_loss": meta.get("best_val_loss"),
                    "steps": meta.get("steps"), "n_windows": meta.get("n_windows"),
                    "epochs_run": len(meta.get("history", [])),
                    # pretraining runs in the shared fixture (first used by gate 1), not in gate 3's test
                    "pretrain_duration_s": meta.get("pretrain_duration_s"), "encoder_obtained_s": outcome.duration_s,
                    "pretrain_cost": meta.get("pretrain_cost"),
                    "probe_s": time.monotonic() - started, "precision": meta.get("precision"),
                    "resumed_from_epoch": resumed, "devices": distributed.get("devices"),
                    "world_size": distributed.get("world_size"), "global_batch": distributed.get("global_batch"),
                    "windows_per_s": (meta.get("throughput") or {}).get("windows_per_s")},
        "comparison": {"baseline": "random_encoder", "baseline_balanced_acc": scores["probe_random_balanced_acc"],
                       "delta": scores["probe_balanced_acc"] - scores["probe_random_balanced_acc"]},
        "extra": {"encoder_source": outcome.source, "encoder_fingerprint": outcome.fingerprint,
                  "pretraining": (f"resumed after epoch {resumed}" if resumed else "from scratch")
                  if outcome.source == "trained" else "cached (trained by an earlier run)",
                  "history": meta.get("history", []), "pool_filter": outcome.pool_filter,
                  "distributed": distributed or None},
        "artifacts": {"encoder": str(outcome.path), "encoder_cache_entry": str(outcome.entry)},
    }


def reconstruction_check(ctx: RunContext, autoencoder_state: dict) -> dict:
    """Masked-reconstruction error on the real **train** windows, relative to predicting each
    window's mean (0 after normalisation). An encoder that learned nothing about real windows,
    e.g. one pretrained on noise, cannot do better than the mean: ratio ~1."""
    config = ctx.profile.pretrain
    windows = torch.from_numpy(ctx.windows[ctx.train])
    generator = torch.Generator().manual_seed(ctx.seed)
    mask = masking.make_mask(len(windows), windows.shape[1], config.mask_strategy, config.mask_ratio,
                             config.patch_size, generator)
    model = masked_autoencoder.MaskedAutoencoder(windows.shape[2], config.hidden_size, config.num_layers)
    model.load_state_dict(autoencoder_state)
    model.to(ctx.device)
    error = pretrain.evaluate_reconstruction(model, windows, mask, ctx.device, 256)
    baseline = float(pretrain.masked_mse(torch.zeros_like(windows), windows, mask))
    return {"reconstruction_mse": error, "mean_baseline_mse": baseline,
            "reconstruction_ratio": error / max(baseline, 1e-12)}


def probe(ctx: RunContext, encoder_state: dict) -> dict:
    """Linear-probe balanced accuracy of the pretrained encoder and of a random one (the control),
    under the protocol: each fold's probe is fitted on its train rows and scores its block; the
    scored rows' predictions are pooled (one probe per fold: the logistic regression is deterministic)."""
    scores = {}
    y = ctx.dataset.y
    for name, state in (("probe_balanced_acc", encoder_state), ("probe_random_balanced_acc", None)):
        # the bars a classifier reads (data.visible_bars), price channels only: the probe scores labels too
        features = encoder_features(build_encoder(ctx, state), ctx.inputs[..., :ctx.windows.shape[2]], ctx.device)
        scored, predicted, per_fold = [], [], []
        for fold in ctx.folds:
            fit_y = ctx.for_fit(fold, ctx.seed).dataset.y  # permuted train labels under --shuffle-labels
            pred = probe_predict(features[fold.train], fit_y[fold.train], features[fold.scored], ctx.seed)
            scored.append(fold.scored)
            predicted.append(pred)
            per_fold.append(float(balanced_accuracy_score(y[fold.scored], pred)))
        scores[name] = float(balanced_accuracy_score(y[np.concatenate(scored)], np.concatenate(predicted)))
        scores[name.replace("balanced_acc", "per_fold")] = per_fold
    return scores
