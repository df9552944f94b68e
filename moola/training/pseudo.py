"""Gate-5 pseudo-samples: safe generators on train rows, quality score, dedup, KS check, cap.

Every candidate is built from one or two **train** rows of the same class and inherits that
label; val/test rows are never an input. Windows are in normalised space `(n, T, C)` and are
re-normalised after generation, so synthetic rows meet the model exactly as real ones do.

Quality of a candidate, in [0, 1], higher is better:

    quality = ohlc_valid * (return_similarity + label_confidence) / 2

- `ohlc_valid`: 1 when the repaired bar satisfies low <= min(open, close) <= max(open, close) <= high
  (always after repair for OHLC; generic series count as valid);
- `return_similarity`: 1 − KS statistic between the candidate's and its source's close-to-close
  changes (1 = identical distribution);
- `label_confidence`: the gate-4 model's probability of the inherited label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

from moola.config import AugmentConfig
from moola.data.normalize import normalize_windows
from moola.data.validate import window_hashes

GENERATORS = ("jitter", "time_warp", "magnitude_warp", "blend")
NEAR_DUPLICATE_RMS = 0.02  # RMS distance (normalised units) below which a candidate is a near-copy


@dataclass
class PseudoSamples:
    windows: np.ndarray  # (m, T, C) accepted synthetic windows, normalised
    y: np.ndarray  # (m,) inherited labels
    provenance: list  # per accepted row: {"source_rows", "generator", "params", "quality"}
    counts: dict  # candidates left after each filter stage
    quality: np.ndarray  # (m,)
    ks: dict  # statistic name -> {"statistic", "p_value"}


def synthetic_cap(n_train: int, config: AugmentConfig) -> int:
    """At most `ratio` synthetic per real train row and at most `max_synthetic` in total."""
    return int(min(np.floor(config.ratio * n_train), config.max_synthetic))


def _warp_curve(rng: np.random.Generator, n_steps: int, sigma: float, n_knots: int = 4) -> np.ndarray:
    knots = rng.normal(1.0, sigma, n_knots + 2)
    return np.interp(np.arange(n_steps), np.linspace(0, n_steps - 1, n_knots + 2), knots)  # (T,)


def generate_candidate(rng: np.random.Generator, generator: str, source: np.ndarray, partner: np.ndarray):
    """One candidate `(T, C)` from a source window (and a same-class partner for `blend`)."""
    n_steps = source.shape[0]
    if generator == "jitter":
        sigma = float(rng.uniform(0.005, 0.02))
        return source + rng.normal(0.0, sigma, (n_steps, 1)), {"sigma": sigma}
    if generator == "magnitude_warp":
        curve = _warp_curve(rng, n_steps, 0.05)
        return source * curve[:, None], {"sigma": 0.05}
    if generator == "time_warp":
        speeds = np.clip(_warp_curve(rng, n_steps, 0.1), 0.2, None)
        positions = np.cumsum(speeds)
        positions = (positions - positions[0]) / (positions[-1] - positions[0]) * (n_steps - 1)
        warped = np.stack([np.interp(positions, np.arange(n_steps), source[:, c]) for c in range(source.shape[1])], 1)
        return warped, {"sigma": 0.1}
    weight = float(rng.uniform(0.75, 0.9))  # blend: mostly the source, shaped a little by the partner
    return weight * source + (1 - weight) * partner, {"weight": weight}


def repair_ohlc(windows: np.ndarray) -> np.ndarray:
    """Set high to the bar's max and low to its min, so every bar is a valid OHLC bar; `(n, T, 4)`."""
    out = windows.copy()
    out[..., 1] = windows.max(axis=-1)
    out[..., 2] = windows.min(axis=-1)
    return out


def per_window_statistics(windows: np.ndarray) -> dict:
    """Per-window statistics the KS check compares: `(n, T, C)` -> name -> `(n,)`."""
    close = windows[..., -1]
    stats = {"close_change_std": np.diff(close, axis=1).std(axis=1), "net_change": close[:, -1] - close[:, 0]}
    if windows.shape[-1] == 4:
        stats["mean_bar_range"] = (windows[..., 1] - windows[..., 2]).mean(axis=1)
    return stats


def ks_report(synthetic: np.ndarray, real: np.ndarray) -> dict:
    """Two-sample KS test per statistic between synthetic and real train windows."""
    report = {}
    real_stats, synth_stats = per_window_statistics(real), per_window_statistics(synthetic)
    for name in real_stats:
        result = ks_2samp(synth_stats[name], real_stats[name])
        report[name] = {"statistic": float(result.statistic), "p_value": float(result.pvalue)}
    return report


def make_pseudo_samples(train_windows: np.ndarray, train_y: np.ndarray, val_windows: np.ndarray,
                        label_proba, config: AugmentConfig, ohlc: bool, seed: int) -> PseudoSamples:
    """Generate, repair, score, deduplicate and cap pseudo-samples from train rows only.

    `label_proba(windows) -> (n, n_classes)` is the gate-4 model's predictor for label confidence.
    """
    rng = np.random.default_rng(seed)
    n_train = len(train_windows)
    candidates, meta = [], []
    for row in range(n_train):
        same_class = np.flatnonzero(train_y == train_y[row])
        for _ in range(config.candidates_per_row):
            generator = GENERATORS[int(rng.integers(len(GENERATORS)))]
            partner_row = int(rng.choice(same_class))
            window, params = generate_candidate(rng, generator, train_windows[row], train_windows[partner_row])
            candidates.append(window)
            sources = [row, partner_row] if generator == "blend" else [row]
            meta.append({"source_rows": sources, "generator": generator, "params": params})
    windows = np.stack(candidates).astype(np.float32)  # (n_train * k, T, C)
    if ohlc:
        windows = repair_ohlc(windows)
    windows = normalize_windows(windows, shared_channels=ohlc)
    labels = train_y[[m["source_rows"][0] for m in meta]]
    counts = {"generated": len(windows)}

    source_close = train_windows[[m["source_rows"][0] for m in meta]][..., -1]
    similarity = np.array([1.0 - ks_2samp(np.diff(w[:, -1]), np.diff(s)).statistic
                           for w, s in zip(windows, source_close)])
    confidence = label_proba(windows)[np.arange(len(windows)), labels]
    quality = 1.0 * (similarity + confidence) / 2  # ohlc_valid = 1 for every repaired candidate
    keep = quality >= config.quality_threshold
    counts["quality"] = int(keep.sum())

    real_hashes = set(window_hashes(train_windows)) | set(window_hashes(val_windows))
    hashes = window_hashes(windows)
    seen: set = set()
    exact_ok = np.zeros(len(windows), bool)
    for i in np.flatnonzero(keep):
        if hashes[i] not in real_hashes and hashes[i] not in seen:
            exact_ok[i] = True
            seen.add(hashes[i])
    counts["exact_dedup"] = int(exact_ok.sum())

    reference = np.concatenate([train_windows, val_windows]).reshape(n_train + len(val_windows), -1)
    flat = windows.reshape(len(windows), -1)
    rms_to_real = np.sqrt(((flat[:, None, :] - reference[None, :, :]) ** 2).mean(axis=2)).min(axis=1)  # (n,)
    near_ok = exact_ok & (rms_to_real >= NEAR_DUPLICATE_RMS)
    counts["near_dedup"] = int(near_ok.sum())

    cap = synthetic_cap(n_train, config)
    order = [i for i in np.argsort(-quality, kind="stable") if near_ok[i]][:cap]
    order = sorted(order)
    counts["capped"] = len(order)
    accepted = windows[order]
    provenance = [{**meta[i], "quality": float(quality[i]), "label": int(labels[i])} for i in order]
    ks = ks_report(accepted, train_windows) if len(order) else {}
    return PseudoSamples(accepted, labels[order], provenance, counts, quality[order], ks)
