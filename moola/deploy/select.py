"""`python -m moola select`: which model the run's evidence supports, from the results lines alone.

Every model a run scored out of fold (smoke, MiniRocket, fine-tuned, augmented, SimpleLSTM,
ensemble) is ranked by pooled macro F1 with its 95% block-bootstrap CI and its training cost, and
one is recommended by a fixed rule (`RULE`), never tuned to the rows it is judged on:

1. **Candidates** are the models that can be delivered: MiniRocket (gate 2 saves its refit), and
   the fine-tuned, augmented and ensemble models when their own gate approved them in this run
   (the augmented one also needs gate 4's rule to hold on the same run's numbers, recorded in its
   line: it is gate 4's recipe plus synthetic rows), and whose saved refit classifies like its
   fold models (`stages.rules.refit_failures`; the ensemble: every member's). Smoke
   (gate 1: a 3-epoch pipeline check, not saved) and SimpleLSTM (gate 6's comparison model) are
   ranked, never recommended. A negative-control run recommends nothing.
2. Every candidate must show **signal**: gate 4's "learned anything" rule under `ci`, whatever the
   run's policy (balanced accuracy − chance above 0 beyond noise and the circular-shift test; every
   class predicted in every seed): "macro F1 above the majority-class baseline" lets a below-chance
   guesser through. When other configurations were tried on the same rows, the test is the
   family-adjusted one (`moola.iterate.adjust`).
3. The **best** is the candidate with the highest pooled macro F1; the **recommended** model is the
   cheapest candidate (device-seconds of training, counting what it needs: the encoder's
   pretraining for the LSTMs) **not shown worse than the best**: `ci`, the paired 95% CI of its F1 minus the best's
   reaches 0; `point`, an F1 equal to the best's. A tie goes to the cheaper model.

The lines carry what this needs (`oof`: each model's pooled out-of-fold predictions; `metrics.cost`),
so `select` gives the same answer on the pod, at the end of the gate run, and on a laptop later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moola.evaluation.crossfit import (
    Evaluation,
    block_resample,
    chance_bootstrap,
    default_run_length,
    paired_block_bootstrap,
)
from moola.evaluation.lines import MODEL_OF_GATE, evaluation_of, line_run_length
from moola.evaluation.simultaneous import f1_draws
from moola.results import requirements_hold
from moola.results import shuffled as negative_control
from moola.stages.rules import refit_failures, signal_failures

LISTED_ONLY = {"smoke": "gate 1's 3-epoch pipeline check on the frozen encoder: not saved, not a deliverable",
               "baseline": "gate 6's comparison model (SimpleLSTM from scratch): never delivered"}
APPROVED = ("passed", "warning")
GATE4 = "4_finetune_enhanced"
RESAMPLES = 1000  # the gates' bootstrap_resamples default: the same draws as their comparisons
RULE = ("the cheapest model (training time, pretraining included for the LSTMs) whose macro F1 is not shown worse "
        "than the best's (ci: the paired 95% CI reaches 0; point: an equal F1), among the deliverable models that "
        "show signal (balanced accuracy above chance beyond noise, under either policy); ties go to the cheaper")


@dataclass
class Ranked:
    """One model of the run, as `select` sees it."""

    name: str
    gate: str
    status: str
    f1: float | None
    f1_ci95: list | None
    cost_s: float | None
    path: str | None
    candidate: bool = False
    why_not: str | None = None  # why it cannot be recommended
    vs_best: dict | None = None  # delta, delta_ci95 against the best candidate
    cost_parts: dict = field(default_factory=dict)
    run_id: str | None = None  # the run whose line scored it


@dataclass
class Selection:
    run_id: str
    policy: str
    ranked: list  # Ranked, best F1 first
    recommended: Ranked | None
    best: Ranked | None
    rule: str = RULE
    notes: list = field(default_factory=list)
    family: tuple | None = None  # (k, K): configuration k of K tried on these rows

    def as_dict(self) -> dict:
        """Plain data for a model file's metadata and `--json`."""
        def one(r: Ranked | None):
            return None if r is None else {"model": r.name, "gate": r.gate, "f1": r.f1, "f1_ci95": r.f1_ci95,
                                           "cost_s": r.cost_s, "path": r.path}
        return {"run_id": self.run_id, "policy": self.policy, "rule": self.rule,
                "recommended": one(self.recommended), "best": one(self.best),
                "vs_best": self.recommended.vs_best if self.recommended else None}


def judged(lines: list[dict], recorded: list[dict] | None = None) -> Selection:
    """`choose` with the family adjustment of every configuration `recorded` (the whole results
    file) holds on the rows `lines` scored."""
    from moola.iterate.adjust import adjust
    from moola.iterate.family import family_of_run

    family = family_of_run(recorded or lines, lines[0]["run_id"])
    adjustment = adjust(family) if family.size > 1 else None
    selection = choose(lines, adjustment)
    k = family.index_of(lines[0]["run_id"])
    if adjustment is not None and k is not None:
        names = {"2_control_minirocket": "smoke − MiniRocket", "4_finetune_enhanced": "fine-tuned − smoke"}
        lost = [(gate, numbers) for lost_k, gate, numbers in adjustment.lost() if lost_k == k]
        lost_gates = {gate for gate, _ in lost}
        adjusted = [f"gate {gate} ({names[gate]}) {adjustment.gates[(k, gate)].text()}" for gate in names
                    if (k, gate) in adjustment.gates and gate not in lost_gates]
        selection.notes[:0] = [
            f"gate {gate} passed in its own run{' (by point comparisons)' if selection.policy == 'point' else ''}, and "
            f"does not hold on the ci rule adjusted for the {family.size} configurations tried on these rows: "
            f"{names[gate]} {numbers.text()}{'' if gate != GATE4 else ' (and the adjusted signal test)'}"
            for gate, numbers in lost] + ([f"over the {family.size} configurations tried on these rows: "
                                           + "; ".join(adjusted)] if adjusted else [])
    return selection


def choose(lines: list[dict], adjustment=None) -> Selection:
    """Rank the models of one run's `lines` and recommend one (module docstring). `adjustment`
    (`moola.iterate.adjust.Adjustment`): the family this run's configuration belongs to; its
    adjusted signal tests and gate-4 verdict decide instead of the per-run ones."""
    first = lines[0]
    run_id = first.get("run_id")
    evaluation = first.get("evaluation") or {}
    policy = evaluation.get("gate_policy") or "ci"
    seed = int(first.get("seed") or 17)
    scored = next((line for line in lines if (line.get("evaluation") or {}).get("n_scored")), first)
    run_length = line_run_length(scored, (scored.get("evaluation") or {}).get("n_scored"))
    status = {line["gate"]: line.get("status") for line in lines}
    shuffled = negative_control(lines)
    ranked, evaluations, notes = [], {}, []
    k = adjustment.family.index_of(run_id) if adjustment is not None else None
    if k is None:
        k = next((i for i, c in enumerate(adjustment.family.configurations, start=1)
                  if any(line.get("run_id") in c.runs for line in lines)), None) if adjustment is not None else None
    size = adjustment.family.size if adjustment is not None else 1

    def adjusted(name: str) -> dict | None:
        """What the family says of this configuration's `name`: its adjusted signal test, and
        whether gate 4's pass survives (None: no family, or K = 1)."""
        if k is None or size < 2:
            return None
        return {"signal": adjustment.signal.get((k, name)), "gate4": adjustment.gate_survives(k, GATE4),
                "gate4_numbers": adjustment.gates.get((k, GATE4)), "size": size, "k": k}

    if k is not None and size > 1:
        notes.append(f"configuration {k} of {size} tried on these rows: signal tests and gate 4's verdict are "
                     f"adjusted for all {size} (simultaneous 95% intervals; docs/iterate.md)")
    for line in lines:
        name = MODEL_OF_GATE.get(line["gate"])
        if name is None:
            continue
        ev = evaluation_of(line)
        metrics = line.get("metrics") or {}
        cost = metrics.get("cost") or {}
        entry = Ranked(name, line["gate"], line.get("status"), ev.val_f1 if ev is not None else None,
                       _f1_ci(ev, seed, run_length) if ev is not None else None, cost.get("total_s"),
                       (line.get("artifacts") or {}).get("model"), cost_parts=cost.get("parts") or {},
                       run_id=line.get("run_id"))
        ranked.append(entry)
        if ev is None:
            entry.why_not = (f"gate {line['gate']} {line.get('status')}: not scored in this run" if
                             line.get("status") in ("skipped", "not_run", "error") else
                             "its line holds no out-of-fold predictions (written before moola recorded them)")
            continue
        evaluations[name] = ev
        entry.why_not = (_why_not(name, line, status, shuffled, ev, policy, seed, run_length, adjusted(name))
                         or _strayed(line, lines))
        entry.candidate = entry.why_not is None
    candidates = [r for r in ranked if r.candidate]
    reference = _common_key(candidates, evaluations)
    for r in candidates:
        if _key(evaluations[r.name]) != reference:
            ev = evaluations[r.name]
            r.candidate, r.why_not = False, (f"scored on other rows or seeds ({len(ev.rows)} rows, seeds "
                                             f"{list(ev.seeds)}) than the other candidates: cannot be paired with them")
    candidates = [r for r in candidates if r.candidate]
    best = max(candidates, key=lambda r: (r.f1, -_cost(r)), default=None)
    recommended = None
    if best is not None:
        for r in candidates:
            delta = paired_block_bootstrap(evaluations[r.name], evaluations[best.name], RESAMPLES, seed, run_length)
            r.vs_best = {"delta": delta["delta"], "delta_ci95": delta["delta_ci95"]}
        close = [r for r in candidates if r is best or _not_worse(r.vs_best, policy)]
        recommended = min(close, key=lambda r: (_cost(r), -r.f1))
        if any(r.cost_s is None for r in close):
            notes.append("a model without a recorded cost counts as the most expensive")
        # a model that cannot be delivered but did better beyond noise: the pick is not "the best" of the run
        for r in ranked:
            ev = evaluations.get(r.name)
            if r.candidate or ev is None or _key(ev) != reference:
                continue
            delta = paired_block_bootstrap(ev, evaluations[recommended.name], RESAMPLES, seed, run_length)
            if delta["delta_ci95"][0] > 0 if policy == "ci" else delta["delta"] > 0:
                notes.append(f"{r.name} scored better than {recommended.name} ({delta['delta']:+.3f} "
                             f"[{delta['delta_ci95'][0]:+.3f}, {delta['delta_ci95'][1]:+.3f}]"
                             f"{'' if policy == 'ci' else ', point rule'}) but cannot be delivered ({r.why_not}): "
                             f"{recommended.name} is the best deliverable model, not the best model of the run")
    ranked.sort(key=lambda r: (r.f1 is None, -(r.f1 or 0.0)))
    return Selection(run_id, policy, ranked, recommended, best, notes=notes + cost_notes(lines),
                     family=(k, size) if k is not None else None)


def cost_notes(lines: list[dict]) -> list[str]:
    """What the costs compared are, and where they were measured, when the lines say."""
    costs = [cost for cost in ((line.get("metrics") or {}).get("cost") for line in lines) if cost]
    if not costs:
        return []
    units = {cost.get("unit") for cost in costs}
    said = [f"costs compared in {units.pop()}" if len(units) == 1 and None not in units else
            "costs compared in seconds as each line recorded them (lines written before moola recorded a unit count "
            "only the last part of a resumed or multi-GPU pretraining, as wall time)"]
    encoder = next((line for line in lines if line["gate"] == "3_pretrain_bilstm"), {})
    cost = (encoder.get("metrics") or {}).get("pretrain_cost") or {}
    if cost.get("machine"):
        said.append(f"pretraining cost {cost['device_s']:.0f} device-seconds on {cost['machine']} ({cost['devices']} "
                    f"device(s), {cost['wall_s']:.0f} s wall); the other parts ran on {encoder.get('device')}")
    return said


def _why_not(name: str, line: dict, status: dict, shuffled: bool, ev: Evaluation, policy: str, seed: int,
             run_length, family: dict | None = None) -> str | None:
    """Why this scored model cannot be recommended (None: it is a candidate). `family`: `choose`'s
    adjusted numbers for it, when other configurations were tried on the same rows."""
    if name in LISTED_ONLY:
        return LISTED_ONLY[name]
    if shuffled:
        return "a negative-control run (train labels shuffled): nothing it trained is delivered"
    if not (line.get("artifacts") or {}).get("model"):
        return f"gate {line['gate']} saved no model in this run"
    if name != "minirocket" and line.get("status") not in APPROVED:
        return f"gate {line['gate']} {line.get('status')}: not approved"
    if name == "augmented":  # gate 4's recipe plus rows: gate 4's rule must hold on this run's numbers
        gate4 = status.get("4_finetune_enhanced")
        if gate4 is not None and gate4 not in APPROVED:
            return f"built on the fine-tuned model, and gate 4_finetune_enhanced {gate4} in this run"
        held, why = requirements_hold(line["gate"], line.get("requires"))
        if not held and not (line.get("requires") is None and gate4 in APPROVED):  # a line before `requires`:
            # gate 4 passing in the same run is the same run's numbers
            return f"built on the fine-tuned model, and {why}"
    members = set(line.get("members_used") or []) if name == "ensemble" else set()
    if family is not None and family["gate4"] is False and members & {"finetuned", "augmented"}:
        return (f"its members {sorted(members & {'finetuned', 'augmented'})} build on gate 4, whose pass does not hold "
                f"on the ci rule adjusted for the {family['size']} configurations tried on these rows (fine-tuned − "
                f"smoke {family['gate4_numbers'].text()}, or its signal test)")
    if family is not None and name in ("finetuned", "augmented") and family["gate4"] is False:
        return (f"gate 4's pass{' (by point comparisons)' if policy == 'point' else ''} does not hold on the ci rule "
                f"adjusted for the {family['size']} configurations tried on these rows (fine-tuned − smoke "
                f"{family['gate4_numbers'].text()}, or its signal test)")
    chance = chance_bootstrap(ev, RESAMPLES, seed, run_length)
    if family is not None and family["signal"] is not None:  # the same test on the family's adjusted numbers
        signal = family["signal"]
        chance = {**chance, "delta_ci95": signal.adjusted_ci95, "shift_p_value": signal.shift_p_value,
                  "shift_p_floor": signal.shift_p_floor}
    metrics = {"val_f1": ev.val_f1, "majority_f1": (line.get("metrics") or {}).get("majority_f1", 0.0),
               "pred_classes_per_seed": [int(np.count_nonzero(np.bincount(p, minlength=ev.n_classes)))
                                         for p in ev.pred]}
    # the ci test whatever the run's policy: "F1 above the majority F1" lets any guesser through
    # (balanced accuracy 0.41 passed it), and a point run must not deliver what a ci run refuses
    failures = signal_failures(metrics, ev.n_classes, "ci", chance)
    if failures and family is not None and family["signal"] is not None:
        failures[0] = f"adjusted for the {family['size']} configurations tried on these rows: {failures[0]}"
    return "; ".join(failures) or None


def _strayed(line: dict, lines: list[dict]) -> str | None:
    """Why the model's saved refit is not the recipe its line scored (the refit floor,
    `stages.rules.refit_failures`); for the ensemble, any member's."""
    def failures(one: dict) -> list:
        return refit_failures(((one.get("metrics") or {}).get("refit") or {}).get("check"))
    said = failures(line)
    if line["gate"] == "7_ensemble":
        gate_of = {name: gate for gate, name in MODEL_OF_GATE.items()}
        for member in line.get("members_used") or (line.get("artifact") or {}).get("members") or []:
            said += [f"member {member}: {failure}" for one in lines if one["gate"] == gate_of.get(member)
                     for failure in failures(one)]
    return "; ".join(said) or None


def _f1_ci(ev: Evaluation, seed: int, run_length) -> list:
    """95% block-bootstrap CI of the pooled macro F1 itself (seed-averaged, as the gate number is)."""
    length = default_run_length(len(ev.rows)) if run_length is None else run_length
    index = block_resample(len(ev.rows), RESAMPLES, length, np.random.default_rng(seed))  # (B, n)
    scores = f1_draws(ev, index)
    low, high = np.percentile(scores, [2.5, 97.5])
    return [float(low), float(high)]


def _key(ev: Evaluation) -> tuple:
    return tuple(ev.rows.tolist()), tuple(ev.seeds)


def _common_key(candidates: list, evaluations: dict) -> tuple | None:
    """The rows and seeds most candidates were scored on (holdout's ensemble may be scored on test
    rows, or on the base seed alone)."""
    if not candidates:
        return None
    keys = [_key(evaluations[r.name]) for r in candidates]
    return max(set(keys), key=keys.count)


def _not_worse(vs_best: dict, policy: str) -> bool:
    if policy == "ci":
        return vs_best["delta_ci95"][1] >= 0
    return vs_best["delta"] >= 0


def _cost(r: Ranked) -> float:
    return r.cost_s if r.cost_s is not None else float("inf")


def shown_path(path) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    if not path:
        return str(path)
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


def row_texts(selection: Selection, r: Ranked) -> tuple[str, str, str]:
    """One ranked model's F1 [CI], its delta to the best [CI], and the verdict, as the table and the
    HTML page print them."""
    f1 = f"{r.f1:.3f} [{r.f1_ci95[0]:.3f}, {r.f1_ci95[1]:.3f}]" if r.f1 is not None else "—"
    vs = (f"{r.vs_best['delta']:+.3f} [{r.vs_best['delta_ci95'][0]:+.3f}, {r.vs_best['delta_ci95'][1]:+.3f}]"
          if r.vs_best and r is not selection.best else "")
    if r is selection.recommended:
        said = "RECOMMENDED" + (" (the best deliverable)" if r is selection.best else
                                " (not shown worse than the best deliverable, cheaper)")
    elif r is selection.best:
        said = "the best F1" + ("; a cheaper model is not shown worse" if selection.recommended else "")
    elif r.candidate:
        said = ("costlier" if _not_worse(r.vs_best, selection.policy) else
                "shown worse than the best" if selection.policy == "ci" else "lower F1 than the best (point rule)")
    else:
        said = f"not a candidate: {r.why_not}"
    return f1, vs, said


def format_selection(selection: Selection) -> str:
    """The ranking as a table, then the recommendation and the rule that chose it."""
    rows = [f"select (run {selection.run_id}, policy {selection.policy}): models ranked by pooled out-of-fold macro F1",
            (f"  {'model':<11} {'gate':<22} {'status':<8} {'macro F1 [95% CI]':<23} {'train s':>8}  "
             f"{'vs best [95% CI]':<26} verdict")]
    for r in selection.ranked:
        f1, vs, said = row_texts(selection, r)
        cost = f"{r.cost_s:8.1f}" if r.cost_s is not None else f"{'—':>8}"
        rows.append(f"  {r.name:<11} {r.gate:<22} {r.status!s:<8} {f1:<23} {cost}  {vs:<26} {said}")
    rows.append(f"rule ({selection.policy} policy): {selection.rule}")
    if selection.recommended is None:
        rows.append("recommended: none: no model of this run can be delivered (the reasons are in the table)")
    else:
        r = selection.recommended
        rows.append(f"recommended: {r.name} -> {shown_path(r.path)}")
    rows.extend(f"note: {note}" for note in selection.notes)
    return "\n".join(rows)
