"""`moola report --html` and `--compare`: one run of the results file as a self-contained HTML page
(inline CSS, plots as PNG `data:` URIs, no script, nothing fetched from the network), and two runs
side by side.

Every string read from the file goes through `html.escape`. A section with nothing to draw says
why in one sentence (the gate's status and reason, or that the file predates the field); a section
that raises shows "could not draw: <error>" and the rest of the report still renders.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from moola.report import plots
from moola.report.cells import (
    delta_cell,
    esc,
    facts_table,
    forest_rows,
    img,
    note,
    num,
    status_span,
    table,
)
from moola.report.plots import is_number
from moola.report.text import data_texts, refit_texts
from moola.results import GATES

log = logging.getLogger(__name__)

PLOT_TAG = '<img src="data:image/png;base64,'
FINETUNE_GATES = (GATES[1], GATES[4], GATES[5], GATES[6])
EXPLAINED_FINETUNE = (GATES[4], GATES[5])  # why not drawn, always; 1 and 6 when they have a line
CONFUSION_GATES = (GATES[1], GATES[2], GATES[4], GATES[5], GATES[6])
COMPARISON_GATES = tuple(GATES[n] for n in range(2, 8))
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .5em 0 1em; } th { background: #f6f8fa; }
td, th { border: 1px solid #d0d7de; padding: 3px 8px; vertical-align: top; text-align: left; }
td.reason { white-space: pre-wrap; max-width: 480px; } td.num { text-align: right; }
img { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #57606a; font-style: italic; } .error { color: #cf222e; }
.banner { background: #cf222e; color: white; font-weight: bold; padding: .5em 1em; }
.status { font-weight: bold; } .s-other { color: #6e7781; }
""" + "".join(f".s-{name} {{ color: {hue}; }}\n" for name, hue in plots.STATUS_COLOURS.items())
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{css}</style></head>
<body><h1>{title}</h1>
{body}</body></html>
"""


def render_html(lines: list[dict], *, results=None, compared: list[dict] | None = None) -> str:
    """The page for one run's `lines`; with `compared` (another run's lines) a comparison first."""
    runs = list(dict.fromkeys(line.get("run_id") for line in lines))
    if len(runs) != 1:
        raise ValueError(f"render_html: expected the lines of one run, found {len(runs)} runs "
                         f"{runs[:5]}; select one with moola.report.latest_run(path, run_id)")
    by_gate = {line["gate"]: line for line in lines}
    sections = [("run", "Run", partial(header, lines, results)),
                ("gates", "Gates", partial(gate_table, lines)),
                ("select", "Which model to use (moola select)", partial(select_html, lines, results)),
                ("comparisons", "Comparisons (forest plot)", partial(forest_html, lines, by_gate)),
                ("pretraining", "Pretraining curves (gate 3)", partial(pretraining_html, by_gate)),
                ("finetuning", "Fine-tuning curves", partial(finetune_html, by_gate)),
                ("confusion", "Confusion matrices", partial(confusion_html, lines, by_gate)),
                ("calibration", "Reliability diagrams (gate 7)",
                 partial(calibration_html, by_gate)),
                ("pseudo", "Pseudo-samples (gate 5)", partial(pseudo_html, by_gate)),
                ("timings", "Timings", partial(timings_html, lines, by_gate))]
    if compared:
        from moola.report.compare import comparison_html  # it reuses this module's cell helpers

        compare = partial(comparison_html, compared, lines)
        sections.insert(0, ("compare", f"Compared with run {compared[0].get('run_id')}", compare))
    body = "".join(section(anchor, title, draw) for anchor, title, draw in sections)
    return PAGE.format(title=esc(f"moola report: run {runs[0]}"), css=CSS, body=body)


def count_parts(page: str) -> tuple[int, int]:
    """(sections, plots) of a rendered page."""
    return page.count("<section "), page.count(PLOT_TAG)


def section(anchor: str, title: str, draw) -> str:
    try:
        body = draw()
    except Exception as exc:  # one broken section must not cost the reader the rest of the page
        log.warning("report section %r could not be drawn: %r", title, exc)
        log.debug("report section %r", title, exc_info=True)  # the traceback, for a bug report
        body = f'<p class="error">could not draw: {esc(type(exc).__name__)}: {esc(exc)}</p>'
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n{body}\n</section>\n'


# --- sections ------------------------------------------------------------------------------

def header(lines: list[dict], results) -> str:
    first = lines[0]
    data, evaluation = first.get("data") or {}, first.get("evaluation") or {}
    policies = sorted({(line.get("comparison") or {}).get("policy") for line in lines} - {None})
    shape = data.get("window_shape")
    facts = {"run id": first.get("run_id"), "results file": results,
             "first line written": first.get("timestamp"), "profile": first.get("profile"),
             "device": first.get("device"), "seed": first.get("seed"),
             "evaluation": evaluation.get("description"),
             "gate policy": ", ".join(map(str, policies)) or evaluation.get("gate_policy"),
             "classes": ", ".join(map(str, data.get("classes") or [])),
             "rows": f"{data['n_train']} train / {data.get('n_val')} val" if "n_train" in data
             else None,
             "distinct windows": (f"{data['n_windows']} behind {data.get('n_labeled')} labeled rows (the effective n)"
                                  if data.get("n_windows") else None),
             "window shape": " × ".join(map(str, shape)) if isinstance(shape, list) else shape,
             "classifiers read": inputs_text(lines),
             "unlabeled pool": data.get("n_unlabeled"), "train labels": data.get("train_labels"),
             "data fingerprint": data.get("fingerprint"),
             "versions": ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items())}
    banner = ('<p class="banner">NEGATIVE CONTROL: train labels shuffled. A sound suite fails at '
              "gate 4 or earlier; no model of this run is a deliverable.</p>\n"
              if str(data.get("train_labels", "")).startswith("shuffled") else "")
    notes = "".join(f"<li>{esc(text)}</li>" for text in data_texts(lines))
    return banner + facts_table(facts) + (note("What gate 0 counted and reported without refusing:")
                                          + f"<ul>{notes}</ul>" if notes else "")


def inputs_text(lines: list[dict]) -> str | None:
    """What the classifiers read (`data.inputs` of the model lines), in words."""
    inputs = next(((line.get("data") or {}).get("inputs") for line in lines if (line.get("data") or {}).get("inputs")),
                  None)
    if not inputs:
        return None
    if inputs.get("span_bars"):
        view = f"the {inputs['span_bars']} bars ending at each labeled span"
    elif inputs.get("visible_bars"):
        view = f"bars 0..{inputs['visible_bars'] - 1} of each window"
    else:
        view = "the whole window"
    return view + (", the span as a channel" if inputs.get("span_channel") else "")


def gate_table(lines: list[dict]) -> str:
    rows = []
    for line in lines:
        warnings = len(line.get("warnings") or [])  # library warnings: shown, recorded, never fatal
        reason = esc(line.get("reason") or "")
        reason += f"\n({warnings} library warning(s) in the line)" if warnings else ""
        rows.append([esc(line.get("gate")), status_span(line.get("status")),
                     num((line.get("metrics") or {}).get("val_f1")),
                     delta_cell(line.get("comparison") or {}),
                     f"{float(line.get('duration_s') or 0):.1f} s", reason])
    return table(["gate", "status", "val_f1", "delta [95% CI], verdict", "duration", "reason"],
                 rows, classes=["", "", "num", "", "num", "reason"])


def forest_html(lines: list[dict], by_gate: dict) -> str:
    rows = forest_rows(lines)
    if not rows:
        return note("No comparison in this run: "
                    + missing_note(by_gate, COMPARISON_GATES, "comparisons"))
    return (img(plots.forest(rows), "forest plot of every comparison's delta and 95% CI")
            + note("Diamond: the delta; line: its 95% CI (green: better, red: worse, grey: within "
                   "noise); dots: per fold; crosses: per seed; dashed red: the rule's threshold "
                   "where it is not 0."))


def pretraining_html(by_gate: dict) -> str:
    line = by_gate.get(GATES[3]) or {}
    history = line.get("history")
    if not history:
        return note(missing_note(by_gate, [GATES[3]], "histories"))
    metrics = line.get("metrics") or {}
    best = metrics.get("best_epoch")
    epochs, train, val, lr = ([h.get(key) for h in history]
                              for key in ("epoch", "train_loss", "val_loss", "lr"))
    uri = plots.pretraining(epochs, train, val, lr, best)
    said = f"Best epoch {best} of {len(history)}"
    said += f", val loss {num(metrics.get('best_val_loss'), '.4f')}"
    source = f"; encoder {line['pretraining']}" if line.get("pretraining") else ""
    probe = ""
    if is_number(metrics.get("probe_balanced_acc")):
        probe = (f" Linear probe balanced accuracy {num(metrics['probe_balanced_acc'])} (random encoder "
                 f"{num(metrics.get('probe_random_balanced_acc'))}); masked reconstruction "
                 f"{num(metrics.get('reconstruction_ratio'), '.2f')}x the window-mean baseline.")
    unjudged = f" {line['unjudged']}." if line.get("unjudged") else ""
    return img(uri, "gate 3 pretraining loss and learning rate") + note(said + source + "." + probe + unjudged)


def select_html(lines: list[dict], results=None) -> str:
    from moola.deploy.select import judged, row_texts, shown_path
    from moola.results import read_lines

    recorded = read_lines(Path(results)) if results and Path(results).is_file() else lines
    selection = judged(lines, recorded)
    rows = []
    for r in selection.ranked:
        f1, vs, said = row_texts(selection, r)
        rows.append([esc(r.name), esc(r.gate), status_span(r.status), esc(f1),
                     num(r.cost_s, ".1f") + (" s" if r.cost_s is not None else ""), esc(vs), esc(said)])
    chosen = selection.recommended
    verdict_text = (f"Recommended: {chosen.name} ({shown_path(chosen.path)}); python -m moola predict uses it by "
                    "default." if chosen else "No model of this run can be delivered (reasons in the table).")
    checks = "".join(f"<li>{esc(text)}</li>" for text in refit_texts(lines))
    said = "".join(f"<li>{esc(text)}</li>" for text in selection.notes)
    k, size = selection.family or (None, 1)
    family = note(f"Configuration {k} of {size} tried on these rows"
                  + (": the signal tests and gate 4's verdict above are adjusted for all of them." if size > 1 else "."))
    return (table(["model", "gate", "status", "macro F1 [95% CI]", "training time", "minus the best [95% CI]",
                   "verdict"], rows, classes=["", "", "", "num", "num", "", "reason"])
            + note(verdict_text + f" Rule: {selection.rule}. Training time counts what the model needs "
                   "(the encoder's pretraining for the LSTMs).") + (family if k is not None else "")
            + (f"<ul>{said}</ul>" if said else "")
            + (note("The saved files are refits on every labeled row, trained at the scored fits' optimizer "
                    "steps; the gate numbers are their fold models'. How far each refit strays from them "
                    "(a gate-7 file's calibration is the recipe's, fitted on the fold models' outputs):")
               + f"<ul>{checks}</ul>" if checks else ""))


def finetune_html(by_gate: dict) -> str:
    parts, unexplained = [], []
    for gate in FINETUNE_GATES:
        line = by_gate.get(gate)
        history = (line or {}).get("history")
        if history:
            said = ", ".join(str(line[key]) for key in ("model", "history_of") if line.get(key))
            title = f"{gate} ({said})" if said else gate
            uri = plots.finetune(title, [h.get("phase", "") for h in history],
                                 [h.get("loss") for h in history],
                                 [h.get("train_acc") for h in history], lr_series(history))
            parts.append(img(uri, f"fine-tuning curves of {title}"))
        elif line is not None or gate in EXPLAINED_FINETUNE:
            unexplained.append(gate)
    if unexplained:
        parts.append(note(("Not drawn: " if parts else "")
                          + missing_note(by_gate, unexplained, "fine-tuning histories")))
    return "\n".join(parts)


def confusion_html(lines: list[dict], by_gate: dict) -> str:
    panels, drawn = [], set()
    for line in lines:
        confusion = (line.get("metrics") or {}).get("confusion")
        if isinstance(confusion, dict) and confusion.get("counts"):
            seeds = confusion.get("seeds")
            classes = confusion.get("classes") or list(range(len(confusion["counts"])))
            summed = f"\n(summed over {seeds} seeds)" if is_number(seeds) and seeds > 1 else ""
            panels.append((line["gate"] + summed, classes, confusion["counts"]))
            drawn.add(line["gate"])
    absent = [gate for gate in CONFUSION_GATES
              if gate not in drawn and (gate in by_gate or not panels)]
    parts = [img(plots.confusion_grid(panels), "confusion matrices, rows true, columns predicted")
             ] if panels else []
    if absent:
        parts.append(note(("Not drawn: " if panels else "")
                          + missing_note(by_gate, absent, "confusion matrices")))
    return "\n".join(parts)


def calibration_html(by_gate: dict) -> str:
    line = by_gate.get(GATES[7]) or {}
    calibration = line.get("calibration")
    models = calibration.get("models") if isinstance(calibration, dict) else None
    if not models:
        return note(missing_note(by_gate, [GATES[7]], "reliability bins"))
    metrics = line.get("metrics") or {}
    panels, rows = [], []
    for name, bins in models.items():
        scores = metrics if name == "ensemble" else (metrics.get("members") or {}).get(name) or {}
        before, after = scores.get("ece_before"), scores.get("ece_after")
        ece = (f"ECE {before:.3f} → {after:.3f}" if is_number(before) and is_number(after)
               else "ECE not recorded")
        panels.append((f"{name}\n{ece}", bins.get("before") or {}, bins.get("after") or {}))
        rows.append([esc(name), num(before), num(after), num(scores.get("brier_before")),
                     num(scores.get("brier_after"))])
    return (img(plots.reliability_grid(panels), "reliability diagrams before and after calibration")
            + table(["model", "ECE before", "ECE after", "Brier before", "Brier after"], rows,
                    classes=["", "num", "num", "num", "num"]))


def pseudo_html(by_gate: dict) -> str:
    line = by_gate.get(GATES[5]) or {}
    metrics, stats = line.get("metrics") or {}, line.get("synthetic_stats")
    ks = metrics.get("ks") or {}
    if not stats and not ks:
        return note(missing_note(by_gate, [GATES[5]], "pseudo-sample statistics"))
    alpha = (line.get("config") or {}).get("ks_alpha")  # the rule: every KS p-value >= ks_alpha
    parts = []
    if stats:
        panels = [(name, ks_title(name, ks.get(name), alpha), values)
                  for name, values in stats.items()]
        parts.append(img(plots.ecdf_grid(panels), "empirical CDFs of real and synthetic rows"))
    else:
        parts.append(note(f"gate {GATES[5]}: empirical CDFs not recorded in this results file "
                          "(written before moola recorded synthetic_stats)."))
    facts = {key: metrics.get(key) for key in ("n_synthetic", "cap", "quality", "generators")}
    stages = metrics.get("filter_counts")  # candidates left after each filter stage, in order
    if isinstance(stages, dict):
        facts["filter_counts"] = " → ".join(f"{stage} {n}" for stage, n in stages.items())
    facts["KS per statistic"] = "; ".join(ks_title(name, values, alpha).replace("\n", ": ")
                                          for name, values in ks.items()) or None
    return "\n".join(parts) + facts_table(facts)


def timings_html(lines: list[dict], by_gate: dict) -> str:
    durations = [float(line.get("duration_s") or 0) for line in lines]
    if not any(durations):
        return note("Every line of this run records 0 s: none of its gates ran to a measured end.")
    uri = plots.timings([line["gate"] for line in lines], durations,
                        [line.get("status") for line in lines])
    parts = [img(uri, "duration of each gate")]
    metrics = (by_gate.get(GATES[3]) or {}).get("metrics") or {}
    pretrain, obtained = metrics.get("pretrain_duration_s"), metrics.get("encoder_obtained_s")
    if is_number(pretrain) or is_number(obtained):
        ranks, speed = metrics.get("world_size"), metrics.get("windows_per_s")
        how = (f" on {ranks} torchrun ranks (global batch {metrics.get('global_batch')})"
               if is_number(ranks) and ranks > 1 else "")
        how += f" at {num(speed, '.0f')} training windows/s" if is_number(speed) else ""
        parts.append(note(f"Gate 3: pretraining took {num(pretrain, '.1f')} s{how}, obtaining the "
                          f"encoder in this run {num(obtained, '.1f')} s (less when cached). "
                          + ("Pretraining runs in a shared fixture; obtaining the encoder is counted in gate 3's "
                             "duration, not in the gate whose setup ran it."
                             if any(line.get("duration_excludes") for line in lines) else
                             "Pretraining runs in a shared fixture: its time counts in the duration of the first "
                             "gate that asked for the encoder (lines written before moola moved it to gate 3).")))
    return "\n".join(parts)


def lr_series(history: list[dict]) -> dict:
    """{group: lr per epoch (None while the group is frozen)}; older lines: one "lr" per epoch."""
    if any(isinstance(h.get("lrs"), dict) for h in history):
        groups = dict.fromkeys(group for h in history for group in (h.get("lrs") or {}))
        return {group: [(h.get("lrs") or {}).get(group) for h in history] for group in groups}
    if any(is_number(h.get("lr")) for h in history):
        return {"lr": [h.get("lr") for h in history]}
    return {}


def missing_note(by_gate: dict, gates, what: str) -> str:
    """Why these gates have nothing to draw, one sentence per distinct reason."""
    groups: dict[str, list] = {}
    for gate in gates:
        line = by_gate.get(gate)
        if line is None:
            why = ": no line in this run (not selected, or the session ended before it)"
        elif line.get("status") in ("passed", "warning", "failed"):
            why = f": not recorded in this results file (written before moola recorded {what})"
        else:
            why = f" {line.get('status')}" + (f": {line['reason']}" if line.get("reason") else "")
        groups.setdefault(why, []).append(gate)
    return " ".join(f"{'gates' if len(names) > 1 else 'gate'} {', '.join(names)}{why}".rstrip(".")
                    + "." for why, names in groups.items())


def ks_title(name: str, ks, alpha) -> str:
    if not isinstance(ks, dict) or not is_number(ks.get("p_value")):
        return f"{name}\nKS not recorded"
    title = f"{name}\nKS {num(ks.get('statistic'))}, p {ks['p_value']:.3f}"
    if is_number(alpha):
        passes = ks["p_value"] >= alpha
        title += f" {'≥' if passes else '<'} {alpha:g} ({'passes' if passes else 'fails'})"
    return title


