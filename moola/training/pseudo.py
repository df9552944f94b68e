"""Gate-5 pseudo-samples: safe generators on train rows, quality score, dedup, KS check, cap.

Every candidate is built from one or two **train** rows of the same class and inherits that
label; val/test rows are never an input (they are only compared against, for deduplication).
Windows are in normalised space `(n, T, C)` and are re-normalised after generation, so synthetic
rows meet the model exactly as real ones do.

Generators (all label-preserving, no free simulation):
- temporal: `jitter` (per-bar noise shared by the four channels), `magnitude_warp` (a smooth
  multiplicative curve), `time_warp` (a smooth monotone re-timing of the bars),
  `window_warp` (one slice of 10% of the bars sped up or slowed down 2x, the rest re-timed to T);
  both warps replay whole source bars (their changes and shapes), never interpolate between bars;
- pattern-based: `blend` (the source's close path mixed 75–90% with a same-class partner's,
  rescaled to the source's spread, with the source's bars hung on it),
  `trend_residual` (the close's residual around a 9-bar moving average scaled by 0.8–1.2, the
  difference added to every channel so bars keep their shape).

Filter stages, each counted in the results line:
1. OHLC: each bar's high/low set to the bar's max/min (repair); a window that still fails is rejected;
2. quality >= `quality_threshold`, where, in [0, 1], higher is better,
       quality = ohlc_valid * (return_similarity + label_confidence) / 2
   - `ohlc_valid`: 1 when every bar satisfies low <= min(open, close) <= max(open, close) <= high
     (always 1 after repair; generic series count as valid);
   - `return_similarity`: 1 − the KS statistic between the candidate's and its source's
     close-to-close changes (1 = the same distribution);
   - `label_confidence`: the gate-4 model's probability of the inherited label;
3. exact dedup: the hash of the normalised window equals no train, val/test or other synthetic row;
4. near dedup: RMS distance to every real row and every accepted synthetic row >= 0.02
   (normalised units; a jitter of sigma <= 0.02 is a copy, not a new sample);
5. cap: the highest-quality survivors, at most `ratio` per train row and `max_synthetic` in all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ks_2samp

from moola.config import AugmentConfig
from moola.data.normalize import normalize_windows
from moola.data.validate import window_hashes

GENERATORS = ("jitter", "magnitude_warp", "time_warp", "window_warp", "blend", "trend_residual")
NEAR_DUPLICATE_RMS = 0.02  # RMS distance (normalised units) below which a candidate is a near-copy
TREND_BARS = 9  # moving-average length separating trend from residual


@dataclass
class PseudoSamples:
    windows: np.ndarray  # (m, T, C) accepted synthetic windows, normalised
    y: np.ndarray  # (m,) inherited labels
    provenance: list  # per accepted row: {"source_rows", "generator", "params", "quality", "label"}
    counts: dict  # candidates left after each filter stage
    quality: np.ndarray  # (m,)
    ks: dict  # statistic name -> {"statistic", "p_value"}


def synthetic_cap(n_train: int, config: AugmentConfig) -> int:
    """At most `ratio` synthetic per real train row and at most `max_synthetic` in total."""
    return int(min(np.floor(config.ratio * n_train), config.max_synthetic))


def synthetic_minimum(n_train: int, config: AugmentConfig) -> int:
    """The fewest synthetic rows a fit may train on: `min_ratio` per real train row, at least one."""
    return max(1, int(np.ceil(config.min_ratio * n_train - 1e-9)))


def _smooth_curve(rng: np.random.Generator, n_steps: int, sigma: float, n_knots: int = 4) -> np.ndarray:
    knots = rng.normal(1.0, sigma, n_knots + 2)
    return np.interp(np.arange(n_steps), np.linspace(0, n_steps - 1, n_knots + 2), knots)  # (T,)


def _warp_bars(window: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Re-time a window by whole bars: output bar t replays source bar round(positions[t]).

    Each output bar takes that source bar's close-to-close change and its shape around its close
    (open, high, low offsets), and the closes are re-integrated. Interpolating between bars would
    average neighbouring changes and smooth the path (close-change std drops ~15%, which the KS
    check rightly flags); replaying bars keeps the distribution of changes and bar ranges.
    `(T, C)`, `(T,)` -> `(T, C)`.
    """
    index = np.clip(np.rint(positions).astype(int), 0, len(window) - 1)
    close = window[:, -1]
    change = np.diff(close, prepend=close[0])  # (T,) change into each bar; 0 for the first
    new_close = close[0] + np.cumsum(np.concatenate([[0.0], change[index[1:]]]))
    return window[index] - close[index, None] + new_close[:, None]


def generate_candidate(rng: np.random.Generator, generator: str, source: np.ndarray, partner: np.ndarray):
    """One candidate `(T, C)` from a source window (and a same-class partner for `blend`), plus its params."""
    n_steps = source.shape[0]
    if generator == "jitter":
        sigma = float(rng.uniform(0.005, 0.03))
        return source + rng.normal(0.0, sigma, (n_steps, 1)), {"sigma": sigma}
    if generator == "magnitude_warp":
        return source * _smooth_curve(rng, n_steps, 0.05)[:, None], {"sigma": 0.05}
    if generator == "time_warp":
        speeds = np.clip(_smooth_curve(rng, n_steps, 0.1), 0.2, None)
        positions = np.cumsum(speeds)
        positions = (positions - positions[0]) / (positions[-1] - positions[0]) * (n_steps - 1)
        return _warp_bars(source, positions), {"sigma": 0.1}
    if generator == "window_warp":
        width = max(2, n_steps // 10)
        start = int(rng.integers(0, n_steps - width))
        factor = float(rng.choice((0.5, 2.0)))
        # Bars before, the slice at `factor` times as many points, bars after; then back to T bars.
        inside = np.linspace(start, start + width, max(2, int(width * factor)), endpoint=False)
        positions = np.concatenate([np.arange(start), inside, np.arange(start + width, n_steps)])
        positions = np.interp(np.linspace(0, len(positions) - 1, n_steps), np.arange(len(positions)), positions)
        return _warp_bars(source, positions), {"start": start, "factor": factor}
    if generator == "blend":
        weight = float(rng.uniform(0.75, 0.9))  # mostly the source, shaped a little by the partner
        close, partner_close = source[:, -1], partner[:, -1]
        mixed = weight * close + (1 - weight) * partner_close
        # A mix of two paths is flatter than either; restore the source's spread so that
        # re-normalising does not inflate the bars' ranges, then hang the source's bars on it.
        mixed = close.mean() + (mixed - mixed.mean()) * close.std() / max(mixed.std(), 1e-12)
        return source - close[:, None] + mixed[:, None], {"weight": weight}
    if generator == "trend_residual":
        close = source[:, -1]
        trend = np.convolve(np.pad(close, TREND_BARS // 2, mode="edge"), np.ones(TREND_BARS) / TREND_BARS, "valid")
        factor = float(rng.uniform(0.8, 1.2))
        shift = (factor - 1.0) * (close - trend)  # (T,) change of the close's residual
        return source + shift[:, None], {"residual_scale": factor}
    raise ValueError(f"unknown generator {generator!r}; expected one of {GENERATORS}")


def repair_ohlc(windows: np.ndarray) -> np.ndarray:
    """Set high to the bar's max and low to its min, so every bar is a valid OHLC bar; `(n, T, 4)`."""
    out = windows.copy()
    out[..., 1] = windows.max(axis=-1)
    out[..., 2] = windows.min(axis=-1)
    return out


def ohlc_valid(windows: np.ndarray, tolerance: float = 1e-5) -> np.ndarray:
    """Per window: every bar has low <= min(open, close) <= max(open, close) <= high; `(n, T, 4)` -> `(n,)`."""
    top = np.maximum(windows[..., 0], windows[..., 3])
    bottom = np.minimum(windows[..., 0], windows[..., 3])
    return ((windows[..., 1] >= top - tolerance) & (windows[..., 2] <= bottom + tolerance)).all(axis=1)


def per_window_statistics(windows: np.ndarray) -> dict:
    """Per-window statistics the KS check compares: `(n, T, C)` -> name -> `(n,)`.

    close_change_std: std of bar-to-bar close changes (roughness); net_change: last close − first
    (trend); mean_bar_range: mean high − low (OHLC only).
    """
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


def statistic_quantiles(synthetic: np.ndarray, real: np.ndarray, n_levels: int = 21) -> dict:
    """The KS statistics' distributions as quantiles, real vs synthetic windows, for a report's CDF plot:
    name -> {"quantiles": levels, "real", "synthetic", "n_real", "n_synthetic"}."""
    levels = np.linspace(0, 1, n_levels)
    real_stats, synth_stats = per_window_statistics(real), per_window_statistics(synthetic)
    return {name: {"quantiles": levels.tolist(), "real": np.quantile(real_stats[name], levels).tolist(),
                   "synthetic": np.quantile(synth_stats[name], levels).tolist() if len(synthetic) else [],
                   "n_real": len(real), "n_synthetic": len(synthetic)} for name in real_stats}


def _rms_to(flat: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Smallest RMS distance from each row of `flat (n, D)` to any row of `reference (m, D)`."""
    if not len(reference):
        return np.full(len(flat), np.inf)
    squared = (flat**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * flat @ reference.T  # (n, m)
    return np.sqrt(np.maximum(squared, 0) / flat.shape[1]).min(axis=1)


def make_pseudo_samples(train_windows: np.ndarray, train_y: np.ndarray, held_out_windows: np.ndarray,
                        label_proba, config: AugmentConfig, ohlc: bool, seed: int,
                        marker_channels: int = 0) -> PseudoSamples:
    """Generate, repair, score, deduplicate and cap pseudo-samples from train rows only.

    `held_out_windows`: val (and test) rows, used only to reject copies of them.
    `label_proba(windows) -> (n, n_classes)`: the gate-4 model, for label confidence.
    `marker_channels`: trailing 0/1 channels of the inputs (the labeled span, `moola.data.inputs`):
    the generators work on the other channels, and each candidate carries its source row's marks
    (a warp moves bars by a few positions, so a warped candidate's span is its source's, to a bar or two).
    """
    if marker_channels:
        values = train_windows.shape[2] - marker_channels
        return _make(train_windows[..., :values], train_y, held_out_windows, label_proba, config, ohlc, seed,
                     marks=train_windows[..., values:])
    return _make(train_windows, train_y, held_out_windows, label_proba, config, ohlc, seed)


def _make(train_windows: np.ndarray, train_y: np.ndarray, held_out_windows: np.ndarray,
          label_proba, config: AugmentConfig, ohlc: bool, seed: int, marks: np.ndarray | None = None) -> PseudoSamples:
    """`make_pseudo_samples` on value channels; `marks` `(n_train, T, m)`: each candidate takes its
    first source row's (then `held_out_windows` hold the marks too, as every compared window does)."""
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
            meta.append({"source_rows": [row, partner_row] if generator == "blend" else [row],
                         "generator": generator, "params": params})
    windows = np.stack(candidates).astype(np.float32)  # (n_train * k, T, C)
    labels = train_y[[m["source_rows"][0] for m in meta]]
    counts = {"generated": len(windows)}

    valid = np.ones(len(windows), bool)
    if ohlc:
        counts["needed_ohlc_repair"] = int((~ohlc_valid(windows)).sum())
        windows = repair_ohlc(windows)
        valid = ohlc_valid(windows)
    windows = normalize_windows(windows, shared_channels=ohlc)
    values, train_values = windows, train_windows  # (n, T, C) value channels: what the KS statistics compare
    if marks is not None:  # the model reads the marks too: the candidates as inputs, and the rows they are compared with
        windows = np.concatenate([windows, marks[[m["source_rows"][0] for m in meta]]], axis=2).astype(np.float32)
        train_windows = np.concatenate([train_windows, marks], axis=2)
    keep = valid.copy()
    counts["ohlc"] = int(keep.sum())

    source_close = train_values[[m["source_rows"][0] for m in meta]][..., -1]
    similarity = np.array([1.0 - ks_2samp(np.diff(w[:, -1]), np.diff(s)).statistic
                           for w, s in zip(values, source_close)])
    confidence = label_proba(windows)[np.arange(len(windows)), labels]
    quality = valid * (similarity + confidence) / 2
    keep &= quality >= config.quality_threshold
    counts["quality"] = int(keep.sum())

    real_hashes = set(window_hashes(train_windows)) | set(window_hashes(held_out_windows))
    hashes = window_hashes(windows)
    seen: set = set()
    for i in np.flatnonzero(keep):
        if hashes[i] in real_hashes or hashes[i] in seen:
            keep[i] = False
        seen.add(hashes[i])
    counts["exact_dedup"] = int(keep.sum())

    flat = windows.reshape(len(windows), -1).astype(np.float64)
    real = np.concatenate([train_windows, held_out_windows]).reshape(-1, flat.shape[1]).astype(np.float64)
    keep &= _rms_to(flat, real) >= NEAR_DUPLICATE_RMS
    accepted: list = []
    cap = synthetic_cap(n_train, config)
    for i in sorted(np.flatnonzero(keep), key=lambda i: (-quality[i], i)):  # best first, ties by index
        if _rms_to(flat[i: i + 1], flat[accepted])[0] < NEAR_DUPLICATE_RMS:
            keep[i] = False
            continue
        accepted.append(i)
    counts["near_dedup"] = len(accepted)
    accepted = sorted(accepted[:cap])
    counts["capped"] = len(accepted)
    provenance = [{**meta[i], "quality": float(quality[i]), "label": int(labels[i])} for i in accepted]
    n_values = values.shape[2]
    ks = ks_report(windows[accepted][..., :n_values], train_values) if accepted else {}
    return PseudoSamples(windows[accepted], labels[accepted], provenance, counts, quality[accepted], ks)
