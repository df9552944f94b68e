"""The last words of a gate run: what happened, which model the evidence supports, what to do next.

Pure text from the session's lines and `moola select`'s answer; the results plugin prints it after
the gate table. Every command it suggests repeats the options that point at the same data, models
and results, so it can be pasted as it is.
"""

from __future__ import annotations

from pathlib import Path

from moola.data.dataset import LABELED, UNLABELED
from moola.deploy.select import Selection, shown_path
from moola.evaluation.sample_size import deciding_comparison
from moola.report.text import short_reason
from moola.results import shuffled as negative_control

# what a failed gate means, in words (the rule's own message follows it)
MEANING = {
    "0_verify_env": "the data or the environment is not usable yet; fix the problems listed above and rerun",
    "1_smoke_enhanced": "the LSTM pipeline itself is broken (it cannot load the encoder or learn 16 rows)",
    "2_control_minirocket": "the pretrained LSTM is not shown to beat the classical control: pretraining has "
                            "not shown that it pays on this data",
    "3_pretrain_bilstm": "the pretrained encoder carries too little class signal for transfer",
    "4_finetune_enhanced": "fine-tuning does not beat the smoke run (or chance) beyond noise",
    "5_augment_train": "the pseudo-samples fail their checks or cost validation F1",
}


def ending(lines: list[dict], selection: Selection, options: dict) -> str:
    """The block printed after the gate table. `options`: run_options, artifacts_dir, results,
    data_root, narrowed (`ResultsPlugin.command_options`)."""
    out = ["what happened: " + happened(lines).replace(". ", ".\n  ", 1)]
    chosen = selection.recommended
    if chosen is None:
        why = "; ".join(f"{r.name}: {r.why_not}" for r in selection.ranked if r.why_not and r.f1 is not None)
        out.append("recommended model: none" + (f" ({short_reason(why, limit=300)})" if why else
                                               ": no model was scored in this run"))
    else:
        ci = chosen.f1_ci95
        beside = "" if chosen is selection.best else (
            f"; the best deliverable F1 is {selection.best.name} {selection.best.f1:.3f}, not shown better "
            f"({chosen.vs_best['delta']:+.3f} [{chosen.vs_best['delta_ci95'][0]:+.3f}, "
            f"{chosen.vs_best['delta_ci95'][1]:+.3f}]) and costlier ({_seconds(selection.best.cost_s)})")
        out.append(f"recommended model: {chosen.name} (gate {chosen.gate}), pooled out-of-fold macro F1 "
                   f"{chosen.f1:.3f} [{ci[0]:.3f}, {ci[1]:.3f}], trained in {_seconds(chosen.cost_s)}{beside}")
        out.append(f"  file: {shown_path(chosen.path)}")
        out.append(f"  rule: {selection.rule}")
        k, size = selection.family or (None, 1)
        if size > 1:
            out.append(f"  this is the pick among this run's models (configuration {k} of {size} tried on these rows); "
                       "select --all-runs chooses across all of them (next)")
    out.extend(f"  note: {note}" for note in selection.notes)
    if options.get("narrowed"):
        out.append(f"  this run scored part of the suite (run {selection.run_id}): its ranking covers only the models "
                   "it scored; python -m moola predict and select without --run-id read the latest run of the whole "
                   "suite")
    out.append("next:")
    for why, command in next_steps(lines, selection, options):
        out.extend([f"  {why}:", f"    {command}"])
    return "\n".join(out)


def happened(lines: list[dict]) -> str:
    """The run's verdict in words."""
    status = {line["gate"]: line["status"] for line in lines}
    shuffled = negative_control(lines)
    prefix = "NEGATIVE CONTROL (train labels shuffled): " if shuffled else ""
    stopped = [line for line in lines if line["status"] in ("failed", "error")]
    later = "".join(f"; {_gates(numbers)} {said}" for said, numbers in (
        ("did not run", [line["gate"].split("_")[0] for line in lines if line["status"] == "not_run"]),
        ("skipped", [line["gate"].split("_")[0] for line in lines if line["status"] == "skipped"])) if numbers)
    if stopped:
        line = stopped[0]
        if line["status"] == "error":
            return f"{prefix}gate {line['gate']} crashed: {short_reason(line.get('reason') or '', limit=240)}{later}"
        meaning = MEANING.get(line["gate"], "its rule failed")
        return (f"{prefix}gate {line['gate']} failed: {meaning}. "
                f"{short_reason(line.get('reason') or '', limit=240)}{later}")
    if all(s == "not_run" for s in status.values()):
        return f"{prefix}no gate ran: {short_reason(lines[0].get('reason') or '')}"
    warned = [gate for gate, s in status.items() if s == "warning"]
    said = f"{prefix}every gate this run judged passed" + (f" (warnings: {', '.join(warned)})" if warned else "")
    if shuffled:
        said += ": a sound suite fails a negative control at gate 4 or earlier, so treat this as a bug to report"
    return said + later


def next_steps(lines: list[dict], selection: Selection, options: dict) -> list[tuple[str, str]]:
    """(why, command) pairs, most useful first. `options["run_options"]`: the gate options this run
    was given (data, seed, protocol, --set …), repeated so a rerun reads the same data and reuses
    the same encoder."""
    # a narrowed run is not "the latest run" for report/select/predict: name it in every command
    run_id = f" --run-id {selection.run_id}" if options.get("narrowed") else ""
    results = (f" {options['results']}" if options.get("results") else "") + run_id
    results_opt = f" --results {options['results']}" if options.get("results") else ""
    artifacts_opt = f" --artifacts-dir {options['artifacts_dir']}" if options.get("artifacts_dir") else ""
    run_opt = f" {options['run_options']}" if options.get("run_options") else ""
    status = {line["gate"]: line["status"] for line in lines}
    steps = [("every model of this run, ranked, and the rule", f"python -m moola select{results}")]
    _k, size = selection.family or (None, 1)
    if size > 1:
        steps.append(((f"choose across the {size} configurations tried on these rows: every model of every run, on "
                      "intervals that count them all (predict then uses its pick)"),
                      (f"python -m moola select{' ' + options['results'] if options.get('results') else ''} --all-runs"
                      f"{artifacts_opt}")))
    chosen = selection.recommended
    if chosen is not None:
        inputs = (lines[0].get("data") or {}).get("inputs") or next(
            ((line.get("data") or {}).get("inputs") for line in lines if (line.get("data") or {}).get("inputs")), {})
        spans = bool(inputs.get("span_channel") or inputs.get("span_bars"))
        # a span-aware model scores windows with their span to classify: the pool has none, the labeled file has
        windows = shown_path(Path(options.get("data_root") or "data") / (LABELED if spans else UNLABELED))
        predict = f"python -m moola predict {windows} --out predictions.parquet{artifacts_opt}{results_opt}{run_id}"
        what = ("windows with the span to classify (columns expansion_start, expansion_end), e.g. the labeled file "
                "(in-sample)" if spans else "any parquet file of windows in the data contract")
        steps.append((f"score windows with {chosen.name} ({what})", predict))
    steps.append(("the run as a page: curves, CIs, timings", f"python -m moola report{results} --html report.html"))
    if status.get("0_verify_env") in ("failed", "error"):
        steps.append(("after fixing the data problems above", f"pytest gates -x{run_opt}"))
        return steps
    unjudged = [gate for gate, s in status.items() if s in ("not_run", "skipped") and int(gate.split("_")[0]) > 2]
    if status.get("2_control_minirocket") == "failed" or status.get("3_pretrain_bilstm") == "failed":
        steps.append(sweep_step(lines, run_opt))
    if status.get("2_control_minirocket") == "failed" and unjudged:
        steps.append((("or see gates 3-7's numbers judged by point comparisons: they show what each model scores, not "
                      "a gain beyond noise, and select still asks every model for signal beyond noise (one more "
                      "configuration tried on these rows)"),
                      f"pytest gates{_without(run_opt, '--gate-policy')} --start-gate 3 --gate-policy point"))
    deep_lost = status.get("2_control_minirocket") == "failed" or status.get("4_finetune_enhanced") == "failed"
    if deep_lost:
        rerun_opt, layout = _without_demo(run_opt)
        if layout is not None:  # the demo's cache is every --demo run's data: label a copy
            data_dir = "my-data"
            words = rerun_opt.split()
            seed = next((f" --seed {words[i + 1]}" for i, w in enumerate(words[:-1]) if w == "--seed"), "")
            copy = (f"[ -d {data_dir} ] || python -m moola demo-data {data_dir}"
                    f"{' --layout ' + layout if layout != 'seed' else ''}{seed}; ")  # never over labels added there
            rerun_opt += f" --data-dir {data_dir}"
        else:
            data_dir, copy = shown_path(Path(options.get("data_root") or "data")), ""
        steps.append((f"to make the pretrained LSTM pay: label more windows, then rerun; {labels_needed(lines)}; "
                      "label-next proposes pool windows that share no bars with the labeled rows, on a page to label "
                      "them (docs/labeling.md: what the choice of windows is worth)"
                      + ("; on a copy of the demo's data" if copy else ""),
                      f"{copy}python -m moola label-next 20 --data-dir {data_dir}"))
        words = run_opt.split()
        cv = next((f" --cv {words[i + 1]}" for i, w in enumerate(words[:-1]) if w == "--cv"), "")
        steps.append(("then merge the page's labels.csv into the labeled file, and rerun on the larger set",
                      f"python -m moola add-labels labels.csv --data-dir {data_dir}{cv} && pytest gates -x{rerun_opt}"))
        if lines[0].get("profile") != "full":
            longer = ("or pretrain longer: the full profile pretrains 50 epochs on the whole pool (minutes on a GPU, "
                      "hours on a 2-core CPU)")
            steps.append((longer, f"pytest gates -x{_without(run_opt, '--profile')} --profile full"))
        else:
            steps.append(("or pretrain longer, if gate 3's curves were still falling",
                          f"pytest gates -x{run_opt} --set pretrain.epochs=100"))
    return steps


def labels_needed(lines: list[dict]) -> str:
    """How many labeled windows would resolve the run's deciding comparison (`evaluation.sample_size`)."""
    needed = deciding_comparison(lines)
    if needed is not None:
        return needed.text()
    rows = max([len((line.get("oof") or {}).get("rows") or []) for line in lines], default=0)
    windows = (lines[0].get("data") or {}).get("n_windows") or rows  # distinct windows behind the rows
    return f"at {windows} labeled windows one window is ~{100 / max(1, windows):.0f} pp of F1 and the CIs are wide"


def sweep_step(lines: list[dict], run_opt: str) -> tuple[str, str]:
    """The sweep over the seed workflow's masking strategies, with what it will cost: each new
    strategy pretrains an encoder (this run's pretraining time) and runs the gates this run ran."""
    encoder = next((line for line in lines if line["gate"] == "3_pretrain_bilstm"), {})
    pretrain_s = ((encoder.get("metrics") or {}).get("pretrain_cost") or {}).get("wall_s")
    gates_s = sum(float(line.get("duration_s") or 0.0) for line in lines if line["gate"] != "3_pretrain_bilstm")
    strategies = ("random", "block", "patch")
    cost = ""
    if pretrain_s:
        total = (len(strategies) - 1) * (pretrain_s + gates_s) + gates_s  # this run's strategy: cached encoder
        cost = f", about {_seconds(total)} here ({len(strategies) - 1} new encoders of ~{_seconds(pretrain_s)} each)"
    kept = _without(_without(run_opt, "--gate-policy"), "--shuffle-labels")
    return ((f"try the seed workflow's masking strategies, each judged by the whole suite and counted as one more "
            f"configuration tried on these rows, then chosen across{cost}; add --grid pretrain.epochs=E1,E2 to "
            "pretrain longer too (docs/iterate.md)"),
            f"python -m moola sweep --grid pretrain.mask_strategy={','.join(strategies)} -- -x{kept}")


def _without(options: str, name: str) -> str:
    """`options` less `name VALUE`."""
    words, kept, skip = options.split(), [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word == name:
            skip = True
            continue
        kept.append(word)
    return (" " + " ".join(kept)) if kept else ""


def _without_demo(options: str) -> tuple[str, str | None]:
    """`options` less `--demo [LAYOUT]` (or `--demo=LAYOUT`), and the layout it named (None: no --demo)."""
    words, kept, layout, skip = options.split(), [], None, False
    for i, word in enumerate(words):
        if skip:
            skip = False
        elif word.startswith("--demo="):
            layout = word.split("=", 1)[1]
        elif word == "--demo":
            follows = words[i + 1] if i + 1 < len(words) else ""
            skip = bool(follows) and not follows.startswith("-")
            layout = follows if skip else "seed"
        else:
            kept.append(word)
    return ((" " + " ".join(kept)) if kept else ""), layout


def _gates(numbers: list) -> str:
    return f"gate {numbers[0]}" if len(numbers) == 1 else f"gates {', '.join(numbers)}"


def _seconds(value) -> str:
    if value is None:
        return "unknown time"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
