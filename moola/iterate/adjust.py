"""Verdicts that survive the search: the comparisons that decide gates 2 and 4, and select's signal
test, computed as simultaneous 95% intervals over every configuration tried on the same rows,
each beside a max-statistic randomization test (block swaps for a comparison of two models, the
circular shift for signal) that an adjusted verdict also needs.

Each configuration's out-of-fold predictions are read from its lines (`moola.evaluation.lines`);
the K configurations' statistics are resampled together with one block bootstrap over the rows
(`moola.evaluation.simultaneous`). Statistics scored on other rows (a holdout run beside blocked
ones) cannot share resamples: each such group gets its share of the 5% (Bonferroni across
groups, max-statistic within). Per-run numbers stay as the lines recorded them; this module says
which per-run passes survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moola.evaluation.crossfit import block_resample, default_run_length, shift_offsets
from moola.evaluation.lines import MODEL_OF_GATE, evaluation_of, line_run_length
from moola.evaluation.simultaneous import (
    chance_draws,
    f1_draws,
    max_shift_p_values,
    simultaneous_intervals,
    swap_max_p_values,
)
from moola.iterate.family import Family

RESAMPLES = 1000  # the gates' bootstrap_resamples default
LEVEL = 0.95
SHIFT_ALPHA = 0.05  # `stages.rules.SHIFT_ALPHA`
SWAP_ALPHA = 0.025  # one-sided, the level of a per-run CI's lower bound
# the gate comparisons adjusted: gate -> (candidate, reference) models, both read from the lines
COMPARISONS = {"2_control_minirocket": ("smoke", "minirocket"), "4_finetune_enhanced": ("finetuned", "smoke")}
# the models select may deliver: their signal tests form one family
DELIVERABLE = ("minirocket", "finetuned", "augmented", "ensemble")
APPROVED = ("passed", "warning")


@dataclass
class Adjusted:
    """One statistic of one configuration, per run and adjusted for the family."""

    k: int
    what: str  # a gate (a comparison) or a model (its signal test)
    delta: float
    adjusted_ci95: list
    shift_p_value: float | None = None  # the signal test's, adjusted
    shift_p_floor: float | None = None
    swap_p_value: float | None = None  # a comparison's max-swap test (`simultaneous.swap_max_p_values`)
    family_size: int = 1  # how many statistics of this kind were adjusted together

    @property
    def clears(self) -> bool:
        """The ci rule on the adjusted numbers: the interval above 0 (and, for a signal test whose
        rotations can reach the level, the adjusted shift p below it)."""
        if self.adjusted_ci95[0] <= 0:
            return False
        if self.swap_p_value is not None and self.swap_p_value >= SWAP_ALPHA:
            return False
        if self.shift_p_value is None or (self.shift_p_floor or 0.0) >= SHIFT_ALPHA:
            return True
        return self.shift_p_value < SHIFT_ALPHA

    def text(self) -> str:
        low, high = self.adjusted_ci95
        shift = "" if self.shift_p_value is None else f", adjusted circular-shift p = {self.shift_p_value:.3f}"
        shift += "" if self.swap_p_value is None else f", adjusted swap p = {self.swap_p_value:.3f}"
        return f"{self.delta:+.3f}, simultaneous 95% CI [{low:+.3f}, {high:+.3f}] over {self.family_size} comparisons{shift}"


@dataclass
class Adjustment:
    """The family's adjusted statistics: `gates[(k, gate)]`, `signal[(k, model)]`."""

    family: Family
    gates: dict = field(default_factory=dict)
    signal: dict = field(default_factory=dict)

    def gate_survives(self, k: int, gate: str) -> bool | None:
        """Whether configuration k's gate (2 or 4) passes on the adjusted numbers; None when the
        family holds no such comparison for it."""
        comparison = self.gates.get((k, gate))
        if comparison is None:
            return None
        if gate == "4_finetune_enhanced":
            signal = self.signal.get((k, "finetuned"))
            return comparison.clears and (signal is None or signal.clears)
        return comparison.clears

    def lost(self) -> list:
        """(k, gate, Adjusted) for every gate a configuration's own run passed and the adjustment
        does not: what the terminal, the report and the page say plainly."""
        said = []
        for k, configuration in enumerate(self.family.configurations, start=1):
            status = {line["gate"]: line.get("status") for line in configuration.lines}
            for gate in COMPARISONS:
                if status.get(gate) in APPROVED and self.gate_survives(k, gate) is False:
                    said.append((k, gate, self.gates[(k, gate)]))
        return said


def evaluations(configuration) -> dict:
    """model -> Evaluation from the configuration's merged lines."""
    found = {}
    for line in configuration.lines:
        name = MODEL_OF_GATE.get(line["gate"])
        ev = evaluation_of(line) if name else None
        if ev is not None:
            found[name] = ev
    return found


def adjust(family: Family, resamples: int = RESAMPLES, seed: int | None = None) -> Adjustment:
    """Every configuration's gate-2 and gate-4 comparison and every deliverable model's signal test,
    adjusted over the family (module docstring)."""
    adjustment = Adjustment(family)
    if not family.configurations:
        return adjustment
    first = family.configurations[0]
    if seed is None:
        seed = int(first.recipe["seed"]) if first.recipe.get("seed") is not None else 17
    models = {k: evaluations(c) for k, c in enumerate(family.configurations, start=1)}
    lines = {k: c.lines for k, c in enumerate(family.configurations, start=1)}
    borrow_missing(family, models)
    for gate, (a, b) in COMPARISONS.items():
        pairs = {k: (found[a], found[b]) for k, found in models.items()
                 if a in found and b in found and np.array_equal(found[a].rows, found[b].rows)
                 and found[a].seeds == found[b].seeds}
        for k, adjusted in _family(pairs, lines, resamples, seed,
                                   lambda pair, index: f1_draws(pair[0], index) - f1_draws(pair[1], index),
                                   lambda pair: pair[0].val_f1 - pair[1].val_f1).items():
            delta, interval, size = adjusted
            adjustment.gates[(k, gate)] = Adjusted(k, gate, delta, interval, family_size=size)
        for k, p_value in _swap_p_values(pairs, lines, resamples, seed).items():
            adjustment.gates[(k, gate)].swap_p_value = p_value
    signal = {(k, name): ev for k, found in models.items() for name, ev in found.items() if name in DELIVERABLE}
    adjusted = _family(signal, {key: lines[key[0]] for key in signal}, resamples, seed, chance_draws,
                       lambda ev: ev.balanced_acc - 1.0 / ev.n_classes)
    shifts = _shift_p_values(signal)
    for key, (delta, interval, size) in adjusted.items():
        p_value, floor = shifts[key]
        adjustment.signal[key] = Adjusted(key[0], key[1], delta, interval, shift_p_value=p_value, shift_p_floor=floor,
                                          family_size=size)
    return adjustment


def borrow_missing(family: Family, models: dict) -> None:
    """A model a configuration did not score, taken from a configuration that trains the same models
    (the same recipe but for `thresholds.*`, which only judge): a `--start-gate 3 --gate-policy point`
    run has no smoke model of its own, and its gate 4 is still judged against the smoke model of the
    `-x` run it continues. In place on `models` (k -> model -> Evaluation)."""
    def trains(configuration) -> tuple:
        recipe = configuration.recipe
        settings = {key: value for key, value in (recipe.get("settings") or {}).items()
                    if not key.startswith("thresholds.")}
        return recipe.get("profile"), repr(sorted(settings.items())), recipe.get("seed"), recipe.get("device")

    for k, configuration in enumerate(family.configurations, start=1):
        for j, other in enumerate(family.configurations, start=1):
            if j != k and trains(other) == trains(configuration):
                for name, ev in models[j].items():
                    models[k].setdefault(name, ev)


def _groups(items: dict) -> dict:
    """Keys grouped by the rows their evaluations were scored on, in order."""
    groups: dict = {}
    for key, item in items.items():
        ev = item[0] if isinstance(item, tuple) else item
        groups.setdefault(tuple(ev.rows.tolist()), []).append(key)
    return groups


def _family(items: dict, lines: dict, resamples: int, seed: int, draws, point) -> dict:
    """key -> (delta, adjusted CI, family size) for statistics `draws(item, index)`; Bonferroni
    across row groups, max-statistic within each."""
    total = len(items)
    out = {}
    for rows, keys in _groups(items).items():
        length = run_length_of(lines[keys[0]], len(rows))
        index = block_resample(len(rows), resamples, length, np.random.default_rng(seed))
        matrix = np.stack([draws(items[key], index) for key in keys])
        intervals, _ = simultaneous_intervals(matrix, 1.0 - (1.0 - LEVEL) * len(keys) / total)
        for key, interval in zip(keys, intervals):
            out[key] = (float(point(items[key])), [float(interval[0]), float(interval[1])], total)
    return out


def _swap_p_values(pairs: dict, lines: dict, resamples: int, seed: int) -> dict:
    """k -> the max-swap p of its comparison, times the row groups' share (Bonferroni across groups)."""
    total = len(pairs)
    out = {}
    for rows, keys in _groups(pairs).items():
        length = run_length_of(lines[keys[0]], len(rows))
        for key, p in zip(keys, swap_max_p_values([pairs[key] for key in keys], length, resamples, seed)):
            out[key] = min(1.0, p * total / len(keys))
    return out


def run_length_of(lines: list, n_rows: int) -> int:
    """The gates' bootstrap run length for rows scored by a configuration's `lines`."""
    scored = next((line for line in lines if (line.get("evaluation") or {}).get("n_scored")), lines[0] if lines else {})
    return line_run_length(scored, n_rows) or default_run_length(n_rows)


def _shift_p_values(items: dict) -> dict:
    """key -> (adjusted shift p, its floor): max over the group's rotations, times the groups' share."""
    total = len(items)
    out = {}
    for keys in _groups(items).values():
        p_values = max_shift_p_values([items[key] for key in keys])
        floor = 1.0 / (1 + len(shift_offsets(len(items[keys[0]].rows))))
        for key, p in zip(keys, p_values):
            out[key] = (min(1.0, p * total / len(keys)), floor * total / len(keys))
    return out
