"""How many labeled windows would resolve the run's deciding comparison.

The deciding comparison is the first gate comparison (in gate order) whose 95% CI does not clear
0: the one more labels could settle. The CI's reach from its difference d to its bound nearer 0, w
at n distinct windows, scales about as 1/√n (the bootstrap resamples blocks of windows), so at
about n·(w/|d|)² windows the CI's edge would reach 0: if the difference is real and holds, a coin
flip that the CI then excludes 0; `POWER_80` times that gives 80% odds. A rough forecast: it assumes
new windows are like the old ones, and counts windows with a class (proposals answered "neither" add
none). Where it is more than `PLAUSIBLE` times the windows labeled now, the difference is too small
to resolve at any plausible count, and the text says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moola.evaluation.lines import MODEL_OF_GATE

PLAUSIBLE = 10  # x the distinct windows labeled now: beyond it, "not at any plausible count"
POWER_80 = ((1.960 + 0.842) / 1.960) ** 2  # ~2.04: from the edge at 0 (50% odds) to 80% odds of excluding 0
ROUND_TO = 10  # windows: the forecast is rough, so is its number


@dataclass(frozen=True)
class RowsNeeded:
    gate: str
    what: str  # e.g. "smoke − minirocket"
    delta: float
    half_width: float  # from the difference to the CI's bound nearer 0
    n_windows: int  # distinct windows behind the scored rows
    windows_needed: int | None  # None: not at any plausible count

    @property
    def more(self) -> int | None:
        return None if self.windows_needed is None else max(0, self.windows_needed - self.n_windows)

    def text(self) -> str:
        said = (f"gate {self.gate}'s {self.what} {self.delta:+.3f}, its 95% CI reaching {self.half_width:.3f} toward 0, "
                f"at {self.n_windows} labeled windows")
        if self.windows_needed is None:
            return (f"{said}: a difference this small is not resolved at any plausible count (it would take more "
                    f"than {PLAUSIBLE * self.n_windows} windows, {PLAUSIBLE}x today's, if it held); labels narrow every "
                    "CI, but they will not settle this comparison")
        raw = self.n_windows * (self.half_width / abs(self.delta)) ** 2  # unrounded
        eighty = int(math.ceil(raw * POWER_80 / ROUND_TO) * ROUND_TO)
        return (f"{said}: if the difference held, about {self.windows_needed} labeled windows (~{self.more} more with a "
                f"class; answers of neither add none) would bring the CI's edge to 0, a coin flip that it then excludes "
                f"0; about {eighty} for 80% odds (the CI narrows about as 1/√n)")


def windows_needed(delta: float, half_width: float, n_windows: int) -> int | None:
    """Windows at which a CI of `half_width` at `n_windows` would shrink below |delta|; None past
    `PLAUSIBLE`. Under holdout the val rows are a fixed share of the windows, so the same formula holds."""
    if n_windows < 1 or not math.isfinite(delta) or not half_width > 0 or abs(delta) < 1e-9:
        return None
    needed = n_windows * (half_width / abs(delta)) ** 2
    if needed > PLAUSIBLE * n_windows:
        return None
    return int(math.ceil(needed / ROUND_TO) * ROUND_TO)


def deciding_comparison(lines: list[dict]) -> RowsNeeded | None:
    """The first judged comparison whose CI includes 0, with the windows that would resolve it."""
    windows = (lines[0].get("data") or {}).get("n_windows") if lines else None
    for line in sorted(lines, key=lambda line: line["gate"]):
        comparison = line.get("comparison") or {}
        ci = comparison.get("delta_ci95")
        if line.get("status") not in ("passed", "failed", "warning") or not ci or comparison.get("delta") is None:
            continue
        if ci[0] > 0 or ci[1] < 0:
            continue  # resolved already
        n = int(windows or (line.get("metrics") or {}).get("n_scored") or 0)
        delta = float(comparison["delta"])
        half = ci[1] - delta if delta < 0 else delta - ci[0]  # the reach toward 0 (a lopsided CI's nearer side)
        names = [MODEL_OF_GATE.get(comparison.get(key) or "", comparison.get(key) or "?")
                 for key in ("candidate_gate", "baseline_gate")]
        return RowsNeeded(line["gate"], " − ".join(names), delta, half, n, windows_needed(delta, half, n))
    return None
