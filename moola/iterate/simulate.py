"""Simulated sweeps: how often some configuration of a model that is no better than the control
"beats the control" by gate 2's rule, judged per run and adjusted for the sweep.

No training: each sweep draws out-of-fold predictions for K configurations and the control on
98 rows whose classes come in regimes, with errors as often for all of them (the null), the
configurations' errors overlapping each other and the control's as measured between real runs
on the demo (docs/iterate.md). Each configuration's comparison is the product's own: macro F1
minus the control's over `block_resample`'s rows, the per-run verdict the 95% percentile CI's
lower bound above 0 (`paired_block_bootstrap`), the adjusted one `simultaneous_intervals`' over
the K together with the max-statistic swap test (`swap_max_p_values` below the level
`adjust.SWAP_ALPHA`), as `moola.iterate.adjust` judges. `python -m moola.iterate.simulate` prints
the rates docs/iterate.md quotes.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from moola.evaluation.crossfit import Evaluation, block_resample, default_run_length
from moola.evaluation.simultaneous import f1_draws, simultaneous_intervals, swap_max_p_values
from moola.iterate.adjust import SWAP_ALPHA

ROWS = 98
# measured on the demo (quick profile, seed 17): the smoke models of the patch, random and block
# masking strategies (pairwise error correlation 0.65, 0.68, 0.42; with MiniRocket's 0.40, 0.36, 0.31;
# error rates 0.06-0.13): docs/iterate.md "How much configurations overlap"
CONFIG_ERROR_CORRELATION = 0.59
CONTROL_ERROR_CORRELATION = 0.36
ERROR_RATE = 0.10


def regimes(rows: int = ROWS, length: int = 14) -> np.ndarray:
    """Two classes in alternating runs of `length` rows, as windows cut from one history."""
    return (np.arange(rows) // length) % 2


def _errors(rng, rows: int, rate: float, shared: np.ndarray, weight: float) -> np.ndarray:
    """Error indicators: each row copies `shared` with probability `weight`, else errs at `rate`
    on its own (two such series correlate by the product of their weights)."""
    return np.where(rng.random(rows) < weight, shared, rng.random(rows) < rate)


def simulate(sweeps: int = 1000, configurations: int = 10, error_rate: float = ERROR_RATE,
             control_error_rate: float | None = None, config_correlation: float = CONFIG_ERROR_CORRELATION,
             control_correlation: float = CONTROL_ERROR_CORRELATION, rows: int = ROWS, resamples: int = 1000,
             seed: int = 17) -> dict:
    """Rates over `sweeps` of "some configuration beats the control": per run and adjusted, with
    their simulation standard errors. `control_error_rate` (default `error_rate`: no signal)."""
    control_rate = error_rate if control_error_rate is None else control_error_rate
    y = regimes(rows)
    weight = math.sqrt(config_correlation)
    control_weight = min(1.0, control_correlation / weight) if control_rate == error_rate else 0.0
    rng = np.random.default_rng(seed)
    length = default_run_length(rows)
    index = block_resample(rows, resamples, length, np.random.default_rng(seed))  # as the gates
    per_run = adjusted = 0
    for _ in range(sweeps):
        shared = rng.random(rows) < error_rate
        control = _evaluation(y, _errors(rng, rows, control_rate, shared, control_weight))
        reference = f1_draws(control, index)
        models = [_evaluation(y, _errors(rng, rows, error_rate, shared, weight)) for _ in range(configurations)]
        draws = np.stack([f1_draws(smoke, index) - reference for smoke in models])
        per_run += bool(np.any(np.percentile(draws, 2.5, axis=1) > 0))
        lower = simultaneous_intervals(draws)[0][:, 0]
        p_values = np.asarray(swap_max_p_values([(smoke, control) for smoke in models], length, resamples, seed))
        adjusted += bool(np.any((lower > 0) & (p_values < SWAP_ALPHA)))
    return {"sweeps": sweeps, "configurations": configurations, "per_run_rate": per_run / sweeps,
            "adjusted_rate": adjusted / sweeps, "per_run_se": _se(per_run / sweeps, sweeps),
            "adjusted_se": _se(adjusted / sweeps, sweeps), "error_rate": error_rate, "control_error_rate": control_rate,
            "config_correlation": config_correlation, "control_correlation": control_correlation}


def _evaluation(y: np.ndarray, errors: np.ndarray) -> Evaluation:
    pred = np.where(errors, 1 - y, y)
    return Evaluation("simulated", np.arange(len(y)), y, np.zeros(len(y), int), (17,), np.eye(2)[pred][None])


def _se(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-12) / n)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moola.iterate.simulate", description=__doc__)
    parser.add_argument("--sweeps", type=int, default=1000)
    parser.add_argument("--configurations", type=int, default=10)
    args = parser.parse_args(argv)
    for k in sorted({1, 3, args.configurations}):
        r = simulate(args.sweeps, k)
        print(f"K={k:>2}: some configuration 'beats the control' with no signal: per run {r['per_run_rate']:.3f} "
              f"(± {r['per_run_se']:.3f}), adjusted {r['adjusted_rate']:.3f} (± {r['adjusted_se']:.3f})")
    r = simulate(args.sweeps // 4, args.configurations, error_rate=0.03, control_error_rate=0.15)
    print(f"K={args.configurations:>2}, real signal (errors 3% vs the control's 15%): per run {r['per_run_rate']:.3f}, "
          f"adjusted {r['adjusted_rate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
