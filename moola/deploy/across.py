"""`moola select --all-runs` / `--sweep ID`: one choice among every configuration × model scored on
the same labeled rows, by `select`'s rule on intervals that count every pair compared.

1. Each configuration's models are judged as `select` judges one run (`deploy.select.choose`), with
   the family-adjusted signal test and gate-4 verdict (`iterate.adjust`): its candidates stay.
2. The **best** is the candidate with the highest pooled macro F1; every other candidate's F1
   minus the best's gets a simultaneous 95% interval over all of them (one block bootstrap, the
   max-statistic of `evaluation.simultaneous`); the **recommended** pair is the cheapest not shown
   worse (its interval reaches 0). `--sweep` ranks the sweep's configurations; the adjustment still
   counts every configuration tried on the rows.
3. The pick's F1 is optimistic: it was picked for being high on these rows. The **nested estimate**
   replays the choice without each block of rows (the same rule on the other blocks) and scores
   that block with the pair chosen without it; pooled over blocks, it estimates what choosing this
   way delivers (Cawley & Talbot 2010).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moola.deploy.select import RESAMPLES, Ranked, choose
from moola.evaluation.crossfit import Evaluation, block_resample
from moola.evaluation.lines import evaluation_of
from moola.evaluation.simultaneous import f1_draws, simultaneous_intervals
from moola.iterate.adjust import Adjustment, adjust, run_length_of
from moola.iterate.family import Family
from moola.training.metrics import macro_f1

RULE = ("among every configuration × model that can be delivered and shows signal (adjusted for the configurations "
        "tried on these rows), the cheapest whose macro F1 is not shown worse than the best's: its simultaneous 95% "
        "interval over all the pairs compared reaches 0; ties go to the cheaper")


@dataclass
class Entry:
    """One configuration × model pair."""

    k: int
    label: str
    ranked: Ranked
    vs_best: dict | None = None  # delta, delta_ci95 (simultaneous) against the best pair


@dataclass
class Across:
    rows: str | None
    size: int  # K: configurations tried on the rows
    entries: list  # Entry, best F1 first
    best: Entry | None
    recommended: Entry | None
    nested: dict | None = None  # {"f1", "ci95", "picks"}
    sweep: str | None = None
    notes: list = field(default_factory=list)
    rule: str = RULE

    def as_dict(self) -> dict:
        def one(e: Entry | None):
            return None if e is None else {"configuration": e.k, "label": e.label, "model": e.ranked.name,
                                           "gate": e.ranked.gate, "run_id": e.ranked.run_id, "f1": e.ranked.f1,
                                           "f1_ci95": e.ranked.f1_ci95, "cost_s": e.ranked.cost_s}
        return {"rows": self.rows, "configurations": self.size, "sweep": self.sweep, "rule": self.rule,
                "recommended": one(self.recommended), "best": one(self.best), "nested": self.nested,
                "vs_best": self.recommended.vs_best if self.recommended else None}


def choose_across(family: Family, sweep: str | None = None, adjustment: Adjustment | None = None) -> Across:
    """Rank every configuration × model of `family` (of `sweep`'s configurations only, when given)
    and recommend one pair (module docstring)."""
    adjustment = adjustment if adjustment is not None else adjust(family)
    entries, evaluations = [], {}
    for k, configuration in enumerate(family.configurations, start=1):
        if sweep is not None and sweep not in configuration.sweeps:
            continue
        selection = choose(configuration.lines, adjustment if family.size > 1 else None)
        by_gate = {line["gate"]: line for line in configuration.lines}
        for r in selection.ranked:
            entry = Entry(k, configuration.label, r)
            entries.append(entry)
            ev = evaluation_of(by_gate[r.gate]) if r.gate in by_gate else None
            if ev is not None:
                evaluations[id(entry)] = ev
    across = Across(family.rows, family.size, entries, None, None, sweep=sweep)
    candidates = [e for e in entries if e.ranked.candidate and id(e) in evaluations]
    rows = _common_rows(candidates, evaluations)
    for e in candidates:
        if tuple(evaluations[id(e)].rows.tolist()) != rows:
            e.ranked.candidate = False
            e.ranked.why_not = "scored on other rows than the other configurations' candidates: cannot be compared"
    candidates = [e for e in candidates if e.ranked.candidate]
    if candidates:
        recorded_seed = family.configurations[0].recipe.get("seed")
        seed = int(recorded_seed) if recorded_seed is not None else 17
        length = run_length_of(family.configurations[candidates[0].k - 1].lines, len(rows))
        pairs = [(e, evaluations[id(e)]) for e in candidates]
        best, recommended, versus = pick(pairs, seed, length, simultaneous=family.size > 1)
        for e in candidates:
            e.vs_best = versus.get(id(e))
        across.best, across.recommended = best, recommended
        across.nested = nested_estimate(pairs, seed, length, simultaneous=family.size > 1)
        if any(e.ranked.cost_s is None for e in candidates):
            across.notes.append("a model without a recorded cost counts as the most expensive")
    entries.sort(key=lambda e: (e.ranked.f1 is None, -(e.ranked.f1 or 0.0)))
    return across


def pick(pairs: list, seed: int, run_length: int, simultaneous: bool = True) -> tuple:
    """(best, recommended, {id(entry): vs_best}) among `pairs` of (entry, Evaluation) on the same rows.
    `simultaneous` False (one configuration): each pair's own paired CI, as `select` ranks one run."""
    f1 = {id(e): ev.val_f1 for e, ev in pairs}
    best, best_ev = max(pairs, key=lambda pair: (f1[id(pair[0])], -_cost(pair[0])))
    others = [(e, ev) for e, ev in pairs if e is not best]
    versus = {}
    close = [best]
    if others:
        index = block_resample(len(best_ev.rows), RESAMPLES, run_length, np.random.default_rng(seed))
        reference = f1_draws(best_ev, index)
        draws = np.stack([f1_draws(ev, index) - reference for _, ev in others])
        intervals = (simultaneous_intervals(draws)[0] if simultaneous else
                     np.percentile(draws, [2.5, 97.5], axis=1).T)
        for (e, ev), (low, high) in zip(others, intervals):
            versus[id(e)] = {"delta": ev.val_f1 - best_ev.val_f1, "delta_ci95": [float(low), float(high)],
                         "compared": len(others)}
            if high >= 0:
                close.append(e)
    recommended = min(close, key=lambda e: (_cost(e), -f1[id(e)]))
    return best, recommended, versus


def nested_estimate(pairs: list, seed: int, run_length: int, simultaneous: bool = True) -> dict | None:
    """The macro F1 the choice delivers: each block of rows (fold) scored by the pair `pick`
    chooses on the other blocks; the base seed's predictions (the saved refits' seed)."""
    first = pairs[0][1]
    folds = np.unique(first.fold_of)
    if len(folds) < 2:
        return None
    pred = np.zeros(len(first.rows), dtype=np.int64)
    picks = []
    for fold in folds:
        inner = first.fold_of != fold
        chosen = pick([(e, _subset(ev, inner)) for e, ev in pairs], seed, run_length, simultaneous)[1]
        ev = next(ev for e, ev in pairs if e is chosen)
        pred[~inner] = ev.pred[0][~inner]
        picks.append({"fold": int(fold), "configuration": chosen.k, "model": chosen.ranked.name})
    index = block_resample(len(first.rows), RESAMPLES, run_length, np.random.default_rng(seed))
    scores = f1_draws(Evaluation("nested", first.rows, first.y, first.fold_of, (0,), np.eye(first.n_classes)[pred][None]),
                      index)
    low, high = np.percentile(scores, [2.5, 97.5])
    return {"f1": macro_f1(first.y, pred, first.n_classes), "ci95": [float(low), float(high)], "picks": picks}


def _subset(ev: Evaluation, mask: np.ndarray) -> Evaluation:
    return Evaluation(ev.name, ev.rows[mask], ev.y[mask], ev.fold_of[mask], ev.seeds, ev.proba[:, mask])


def _common_rows(candidates: list, evaluations: dict) -> tuple | None:
    keys = [tuple(evaluations[id(e)].rows.tolist()) for e in candidates]
    return max(set(keys), key=keys.count) if keys else None


def _cost(e: Entry) -> float:
    return e.ranked.cost_s if e.ranked.cost_s is not None else float("inf")


def format_across(across: Across) -> str:
    """The ranking of every scored configuration × model, the configurations' legend, then the pick,
    its nested estimate and the rule."""
    title = f"sweep {across.sweep}" if across.sweep else "every run"
    rows = [f"select ({title}): configuration × model pairs ranked by pooled out-of-fold macro F1",
            (f"  {'k':>2}  {'model':<11} {'status':<8} {'macro F1 [95% CI]':<23} {'train s':>8}  "
             f"{'vs best [simultaneous 95%]':<27} verdict")]
    unscored: dict = {}
    for e in across.entries:
        r = e.ranked
        if r.f1 is None:
            unscored.setdefault(e.k, []).append(r.name)
            continue
        vs = (f"{e.vs_best['delta']:+.3f} [{e.vs_best['delta_ci95'][0]:+.3f}, {e.vs_best['delta_ci95'][1]:+.3f}]"
              if e.vs_best else "")
        if e is across.recommended:
            said = "RECOMMENDED" + (" (the best)" if e is across.best else " (not shown worse than the best, cheaper)")
        elif e is across.best:
            said = "the best F1; a cheaper pair is not shown worse"
        elif r.candidate:
            said = "costlier" if e.vs_best and e.vs_best["delta_ci95"][1] >= 0 else "shown worse than the best"
        else:
            said = f"not a candidate: {r.why_not}"
        cost = f"{r.cost_s:8.1f}" if r.cost_s is not None else f"{'—':>8}"
        f1 = f"{r.f1:.3f} [{r.f1_ci95[0]:.3f}, {r.f1_ci95[1]:.3f}]"
        rows.append(f"  {e.k:>2}  {r.name:<11} {r.status!s:<8} {f1:<23} {cost}  {vs:<27} {said}")
    labels = {e.k: e.label for e in across.entries}
    rows.append("configurations: " + "; ".join(
        f"{k} = {label}" + (f" (not scored: {', '.join(unscored[k])})" if k in unscored else "")
        for k, label in sorted(labels.items())))
    rows.append(f"rule: {across.rule}")
    if across.recommended is None:
        rows.append("recommended: none: no configuration × model pair can be delivered (the reasons are in the table)")
    else:
        e = across.recommended
        rows.append(f"recommended: configuration {e.k} ({e.label}), {e.ranked.name} of run {e.ranked.run_id}, "
                    f"pooled out-of-fold macro F1 {e.ranked.f1:.3f}")
        if across.nested:
            n = across.nested
            rows.append(f"  that F1 was picked for being high on these rows; choosing this way delivers about "
                        f"{n['f1']:.3f} [{n['ci95'][0]:.3f}, {n['ci95'][1]:.3f}] (nested estimate: each block of rows "
                        "scored by the pair chosen on the other blocks)")
    rows.extend(f"note: {note}" for note in across.notes)
    return "\n".join(rows)


def mark_pick(artifacts_dir: Path, across: Across) -> tuple:
    """The recommended pair's file (live, or kept in its run's folder: `deploy.archive`), marked as
    selected: `(path, None)`, or `(None, why not)`."""
    from moola.artifacts import mark_selected
    from moola.deploy.archive import file_of
    from moola.deploy.model import MODELS

    e = across.recommended
    path = file_of(artifacts_dir, e.ranked.run_id, MODELS[e.ranked.name])
    if path is None:
        return None, (f"run {e.ranked.run_id}'s {e.ranked.name} file is neither at {Path(artifacts_dir) / MODELS[e.ranked.name]} "
                      f"nor kept under {Path(artifacts_dir) / 'runs' / e.ranked.run_id} (a later run replaced it, or it "
                      "ran before moola kept every run's models): rerun that configuration, or pass --artifacts-dir")
    mark_selected(path, e.ranked.run_id, {**across.as_dict(), "run_id": e.ranked.run_id})
    return path, None
