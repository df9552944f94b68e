"""Small pieces the report's page and its comparison share: escaping, number cells, tables, and
every comparison of a run as forest-plot rows."""

from __future__ import annotations

import html
import json

from moola.report import plots
from moola.report.plots import is_number
from moola.report.text import verdict
from moola.results import GATES

TOLERANCE_GATES = (GATES[5], GATES[7])  # their rule passes down to −config["tolerance"], not 0
CANDIDATE_NAMES = {GATES[3]: "linear probe"}  # gate 3 compares probes on two encoders, not gates
ABSENT = "(absent)"


# --- reading lines -------------------------------------------------------------------------

def forest_rows(lines: list[dict]) -> list[plots.ForestRow]:
    """Every comparison of the run with a numeric delta, gate 4's balanced accuracy − chance too."""
    rows = []
    for line in lines:
        comparison, gate = line.get("comparison") or {}, line["gate"]
        if not is_number(comparison.get("delta")):
            continue
        candidate = comparison.get("candidate_gate") or CANDIDATE_NAMES.get(gate, gate)
        baseline = comparison.get("baseline_gate") or comparison.get("baseline") or "baseline"
        measure = " (balanced accuracy)" if "baseline_balanced_acc" in comparison else ""
        tolerance = (line.get("config") or {}).get("tolerance")
        ruled = gate in TOLERANCE_GATES and is_number(tolerance) and tolerance
        rows.append(forest_row(f"{gate} — {candidate} minus {baseline}{measure}", comparison,
                               -tolerance if ruled else None))
        chance = comparison.get("chance")
        if isinstance(chance, dict) and is_number(chance.get("delta")):
            rows.append(forest_row(f"{gate} — balanced accuracy minus chance", chance))
    return rows


def forest_row(label: str, comparison: dict, threshold: float | None = None) -> plots.ForestRow:
    return plots.ForestRow(label, comparison["delta"], ci95(comparison),
                           numbers(comparison.get("per_fold_delta")),
                           numbers(comparison.get("per_seed_delta")), threshold)


# --- small formatting helpers --------------------------------------------------------------

def numbers(values) -> list:
    return [v for v in values if is_number(v)] if isinstance(values, list) else []


def ci95(comparison: dict) -> tuple[float, float] | None:
    ci = comparison.get("delta_ci95")
    usable = isinstance(ci, list) and len(ci) == 2 and all(map(is_number, ci))
    return (ci[0], ci[1]) if usable else None


def delta_dict(row) -> dict | None:
    return None if row is None else {"delta": row.delta, "ci95": row.ci95 and list(row.ci95)}


def interval(delta: dict | None) -> str:
    if delta is None:
        return "—"
    ci = delta["ci95"]
    return f"{delta['delta']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}] {verdict(ci)}" if ci
                                       else " (no CI)")


def delta_cell(comparison: dict) -> str:
    if not is_number(comparison.get("delta")):
        return ""
    cell = esc(interval({"delta": comparison["delta"], "ci95": ci95(comparison)}))
    chance = comparison.get("chance")
    if isinstance(chance, dict) and is_number(chance.get("delta")):
        chance_interval = interval({"delta": chance["delta"], "ci95": ci95(chance)})
        cell += "<br>balanced acc − chance " + esc(chance_interval)
    return cell


def num(value, spec: str = ".3f") -> str:
    return format(value, spec) if is_number(value) else "—"


def show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def status_span(status) -> str:
    colour = f"s-{status}" if status in plots.STATUS_COLOURS else "s-other"
    return f'<span class="status {colour}">{esc(status)}</span>'


def esc(value) -> str:
    return html.escape(str(value))


def cell_text(value) -> str:
    """A fact as text: numbers to 3 significant places, dicts as `key value` pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(cell_text(v) for v in value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def facts_table(facts: dict) -> str:
    rows = [[esc(name), esc(cell_text(value))] for name, value in facts.items()
            if value not in (None, "", {}, [])]
    return table([], rows) if rows else ""


def table(headers: list, rows: list[list], classes: list | None = None) -> str:
    """Cells are HTML already (escaped by the caller)."""
    classes = classes or [""] * max((len(row) for row in rows), default=0)
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>\n" if headers else ""
    body = "".join("<tr>" + "".join(f'<td class="{c}">{cell}</td>' if c else f"<td>{cell}</td>"
                                    for c, cell in zip(classes, row)) + "</tr>\n"
                   for row in rows)
    return f"<table>\n{head}{body}</table>\n"


def img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">\n'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>\n'
