"""`moola report --compare RUN_A RUN_B`: two runs of one results file side by side — status and
val_f1 per gate, the settings that differ, every comparison's delta with its CI — as text or as the
first section of the HTML report (the "iterate" step: what changed, and what it did)."""

from __future__ import annotations

import numpy as np

from moola.deploy.select import evaluation_of, line_run_length
from moola.evaluation.crossfit import paired_block_bootstrap
from moola.report.cells import (
    ABSENT,
    delta_dict,
    esc,
    forest_rows,
    interval,
    note,
    num,
    show,
    status_span,
    table,
)
from moola.report.plots import is_number
from moola.report.text import verdict


def comparison_html(lines_a: list[dict], lines_b: list[dict]) -> str:
    comparison = compare_runs(lines_a, lines_b)
    a, b = comparison["run_a"], comparison["run_b"]
    gates = table(["gate", f"status {a}", f"status {b}", f"val_f1 {a}", f"val_f1 {b}", "B − A",
                   "95% CI (paired, same rows)"],
                  [[esc(g["gate"]), status_span(g["status_a"]), status_span(g["status_b"]),
                    num(g["f1_a"]), num(g["f1_b"]), num(g["f1_delta"], "+.3f"), esc(ci_text(g.get("f1_delta_ci95")))]
                   for g in comparison["gates"]], classes=["", "", "", "num", "num", "num", ""])
    settings = table(["setting", a, b], [[esc(d["key"]), esc(d["a"]), esc(d["b"])]
                                         for d in comparison["config"]])
    deltas = table(["comparison", f"delta [95% CI] {a}", f"delta [95% CI] {b}"],
                   [[esc(c["label"]), esc(interval(c["a"])), esc(interval(c["b"]))]
                    for c in comparison["comparisons"]])
    return (f"<p>Run B = {esc(b)} (this report) against run A = {esc(a)}.</p>\n"
            f"<h3>Gates</h3>\n{gates}<h3>Settings that differ</h3>\n"
            f"{settings if comparison['config'] else note('No setting differs.')}"
            f"<h3>Comparisons</h3>\n{deltas}")


def compare_runs(lines_a: list[dict], lines_b: list[dict]) -> dict:
    """Run B against run A: status and val_f1 per gate, the settings that differ, both deltas."""
    a, b = ({line["gate"]: line for line in lines} for lines in (lines_a, lines_b))
    gates = []
    for gate in dict.fromkeys([*a, *b]):
        line_a, line_b = a.get(gate) or {}, b.get(gate) or {}
        f1_a, f1_b = ((line.get("metrics") or {}).get("val_f1") for line in (line_a, line_b))
        gates.append({"gate": gate, "status_a": line_a.get("status", ABSENT),
                      "status_b": line_b.get("status", ABSENT), "f1_a": f1_a, "f1_b": f1_b,
                      "f1_delta": f1_b - f1_a if is_number(f1_a) and is_number(f1_b) else None,
                      "f1_delta_ci95": paired_runs(line_a, line_b)})
    rows_a, rows_b = ({row.label: row for row in forest_rows(lines)}
                      for lines in (lines_a, lines_b))
    comparisons = [{"label": label, "a": delta_dict(rows_a.get(label)),
                    "b": delta_dict(rows_b.get(label))}
                   for label in dict.fromkeys([*rows_a, *rows_b])]
    return {"run_a": lines_a[0].get("run_id"), "run_b": lines_b[0].get("run_id"), "gates": gates,
            "config": setting_differences(lines_a, lines_b), "comparisons": comparisons}


def paired_runs(line_a: dict, line_b: dict) -> list | None:
    """The 95% CI of B − A pooled macro F1 when both lines scored the same rows, with the same labels
    and seeds (their `oof` records): the same block bootstrap a gate's own comparison uses (runs of
    whole windows); None otherwise."""
    ev_a, ev_b = (evaluation_of(line) if line else None for line in (line_a, line_b))
    if ev_a is None or ev_b is None or ev_a.seeds != ev_b.seeds or not (
            np.array_equal(ev_a.rows, ev_b.rows) and np.array_equal(ev_a.y, ev_b.y)):
        return None  # other rows, labels or seeds: nothing to pair
    return paired_block_bootstrap(ev_b, ev_a, run_length=line_run_length(line_b, len(ev_b.rows)))["delta_ci95"]


def format_comparison(comparison: dict) -> str:
    """`compare_runs` as text."""
    a, b = comparison["run_a"], comparison["run_b"]
    head = ("gate", "status A", "status B", "val_f1 A", "val_f1 B", "B − A", "[95% CI] (paired, same rows)")
    rows = [f"run {b} (B) compared with run {a} (A)",
            "{:<22}  {:<8}  {:<8}  {:>8}  {:>8}  {:>7}  {}".format(*head)]
    rows += [f"{g['gate']:<22}  {g['status_a']:<8}  {g['status_b']:<8}  {num(g['f1_a']):>8}  "
             f"{num(g['f1_b']):>8}  {num(g['f1_delta'], '+.3f'):>7}  {ci_text(g.get('f1_delta_ci95'))}"
             for g in comparison["gates"]]
    rows.append("settings that differ (A → B):" + ("" if comparison["config"] else " none"))
    rows += [f"  {d['key']}: {d['a']} → {d['b']}" for d in comparison["config"]]
    rows.append("comparisons, delta [95% CI] (A → B):"
                + ("" if comparison["comparisons"] else " none"))
    rows += [f"  {c['label']}: {interval(c['a'])} → {interval(c['b'])}"
             for c in comparison["comparisons"]]
    return "\n".join(rows)


def ci_text(ci) -> str:
    if not ci:
        return ""
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}] {verdict(ci)}"


def setting_differences(lines_a: list[dict], lines_b: list[dict]) -> list[dict]:
    """[{key, a, b}] for every dotted setting that differs; a gate that recorded no config on one
    side (not run, skipped) is one row rather than one per key."""
    settings_a, settings_b = run_settings(lines_a), run_settings(lines_b)
    configs_a, configs_b = ({line["gate"]: line.get("config") or {} for line in lines}
                            for lines in (lines_a, lines_b))
    one_sided = {gate for gate in {*configs_a, *configs_b}
                 if bool(configs_a.get(gate)) != bool(configs_b.get(gate))}
    rows = [{"key": f"{gate}.config", "a": recorded(configs_a.get(gate), lines_a, gate),
             "b": recorded(configs_b.get(gate), lines_b, gate)} for gate in sorted(one_sided)]
    for key in dict.fromkeys([*settings_a, *settings_b]):
        if key.split(".")[0] in one_sided:
            continue
        value_a, value_b = settings_a.get(key, ABSENT), settings_b.get(key, ABSENT)
        if value_a != value_b:
            rows.append({"key": key, "a": show(value_a), "b": show(value_b)})
    return rows


def run_settings(lines: list[dict]) -> dict:
    """Dotted keys: profile, seed, data.fingerprint, evaluation.*, and each gate's config GATE.*."""
    first = lines[0]
    settings = {"profile": first.get("profile"), "seed": first.get("seed"),
                "data.fingerprint": (first.get("data") or {}).get("fingerprint")}
    settings.update(flatten(first.get("evaluation") or {}, "evaluation"))
    settings.update(flatten((first.get("data") or {}).get("inputs") or {}, "data.inputs"))
    for line in lines:
        settings.update(flatten(line.get("config") or {}, line["gate"]))
    return settings


def flatten(values: dict, prefix: str) -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def recorded(config, lines: list[dict], gate: str) -> str:
    if config:
        return f"({len(config)} key{'s' if len(config) != 1 else ''})"
    line = next((line for line in lines if line["gate"] == gate), None)
    return f"(none: {line.get('status')})" if line else "(no line)"
