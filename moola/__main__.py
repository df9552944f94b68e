"""Command line: `demo-data OUT`, `make-split DATA_DIR`, `filter-pool DATA_DIR`, `import-ucr`,
`report [RESULTS]`, `select [RESULTS]`, `predict WINDOWS` (run as `python -m moola`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from moola.data.dataset import LABELED, SPLIT, UNLABELED
from moola.data.errors import DataContractError, Problem
from moola.data.parquet import read_windows
from moola.data.split import check_split, free_name, read_split, temporal_split, write_json_atomic
from moola.data.validate import leaking_rows

RESULTS = "gated_workflow_results.jsonl"


def demo_data(args) -> int:
    from moola.data.demos import write

    root = write(args.layout, Path(args.out), seed=args.seed)
    print(f"demo dataset ({args.layout}) written under {root}: {LABELED}, {UNLABELED}, {SPLIT}")
    return 0


def filter_pool(args) -> int:
    """Write the unlabeled pool without the windows that are, or share bars with, the split's val/test
    rows (gate 0's refusal under --cv holdout); the old file is kept as .bak[.N]."""
    import pyarrow.parquet as pq

    from moola.data.parquet import write_windows
    from moola.data.validate import pool_leaks

    root = Path(args.data_dir)
    labeled, problems = read_windows(root / LABELED, labeled=True)
    unlabeled, more = read_windows(root / UNLABELED, labeled=False)
    split, more_split = read_split(root / SPLIT)
    if labeled is None or unlabeled is None or split is None:  # other problems are gate 0's to list
        raise DataContractError([*problems, *more, *more_split])
    check = check_split(split, len(labeled), None)
    if check:
        raise DataContractError(check)
    held_out = np.concatenate([split.val, split.test])
    leaking = pool_leaks(labeled, unlabeled, held_out, shared_channels=labeled.features.shape[2] == 4)
    drop = leaking["identical"] | leaking["sharing"]
    if not drop.any():
        print(f"{root / UNLABELED}: no pool window is, or shares bars with, one of the {len(held_out)} val/test rows; "
              "nothing written")
        return 0
    source = pq.read_table(root / UNLABELED)
    keep = np.flatnonzero(~drop)
    columns = {name: source[name].take(keep).to_numpy(zero_copy_only=False)
               for name in source.column_names if name != "features"}
    path = root / UNLABELED
    backup = free_name(path.with_name(path.name + ".bak"))
    path.replace(backup)
    write_windows(path, {**columns, "features": unlabeled.features[keep].astype(np.float64)})
    print(f"{path}: left out {int(leaking['identical'].sum())} window(s) identical to and "
          f"{int(leaking['sharing'].sum())} sharing bars with the split's {len(held_out)} val/test rows; "
          f"{len(keep)} of {len(drop)} kept (the old file is {backup})")
    return 0


def make_split(args) -> int:
    root = Path(args.data_dir)
    table, problems = read_windows(root / LABELED, labeled=True)
    # The split orders rows by `timestamp` and counts labels: a problem in either column would
    # silently give a split by row order, or wrong counts.
    blocking = [p for p in problems if "column 'timestamp'" in p.where or "column 'label'" in p.where]
    if table is None or blocking:
        raise DataContractError(blocking or problems)
    split = temporal_split(len(table), args.val_fraction, table.timestamps)
    train, val = np.asarray(split["train_indices"]), np.asarray(split["val_indices"])
    leaking = leaking_rows(table, train, val)
    if len(leaking):  # the last train windows cut from the bars of the first val windows
        split["train_indices"] = sorted(set(train.tolist()) - set(leaking.tolist()))
        print(f"left {len(leaking)} train row(s) out of the split: they share bars with, or copy, a val row "
              f"(rows {leaking[:8].tolist()})")
    counts = {side: dict(Counter(table.labels[split[f"{side}_indices"]].tolist())) for side in ("train", "val")}
    classes = sorted(set(table.labels.tolist()))
    lacking = [(side, c) for side in counts for c in classes if counts[side].get(c, 0) < (2 if side == "train" else 1)]
    print(f"class counts: train {counts['train']}, val {counts['val']}")
    if lacking:
        raise ValueError(f"{root / LABELED}: a temporal split at --val-fraction {args.val_fraction} gives "
                         + ", ".join(f"{side} {counts[side].get(c, 0)} row(s) of {c!r}" for side, c in lacking)
                         + "; expected both classes on both sides (train >= 2 each, val >= 1). Try another "
                         "--val-fraction, or label windows of the missing class in that period. Nothing written")
    out = Path(args.out) if args.out else root / SPLIT
    if out.exists() and not args.force:
        backup = free_name(out.with_name(out.name + ".bak"))
        out.replace(backup)
        print(f"kept the previous split as {backup}")
    write_json_atomic(out, split)
    by = "timestamp" if table.timestamps is not None else "row order (no timestamp column)"
    asked = max(1, round(len(table) * args.val_fraction))
    moved = "" if len(split["val_indices"]) <= asked else (
        f" ({len(split['val_indices']) - asked} more val rows than --val-fraction asks: rows sharing the boundary's "
        "timestamp all go to val)")
    print(f"temporal split by {by}: {len(split['train_indices'])} train rows, "
          f"{len(split['val_indices'])} val rows{moved} -> {out}")
    return 0


def add_labels(args) -> int:
    """Merge the labeling page's CSV into the labeled file (`moola.labeling.merge`)."""
    from moola.labeling.folder import read_folder, resolve_root
    from moola.labeling.merge import describe, merged_arrow, new_problems, plan, record_neither, write

    root, profile = resolve_root(args.data_dir)
    folder = read_folder(root, profile.data)
    merge = plan(folder, Path(args.labels))
    if not merge.ids:  # windows answered neither only: remembered, nothing added
        print("\n".join([f"no labeled row added ({record_neither(merge)})", *(f"  note: {n}" for n in merge.notes)]))
        return 0
    table = merged_arrow(merge)
    protocol = args.cv or profile.evaluation.cv
    problems = new_problems(merge, table, profile.data, protocol)
    if problems:  # gate 0 would refuse the merged folder where it did not refuse the old one
        pool = any("filter-pool" in p.fix for p in problems) and protocol == "holdout"
        raise DataContractError([*problems, Problem(
            str(root), f"a merged folder gate 0 accepts under --cv {protocol}, as it accepted the old one",
            "the problems above", "nothing was written" + (
                f"; to keep these labels under holdout: python -m moola add-labels {args.labels} --data-dir {root} "
                f"--cv blocked, then python -m moola filter-pool {root}" if pool else ""))])
    print("\n".join(describe(merge, write(merge, table))))
    record_neither(merge)
    print(f"next: pytest gates -x --data-dir {root}")
    return 0


def label_next(args) -> int:
    """Propose N pool windows to label and write the labeling page (`moola.labeling`)."""
    from moola.labeling.folder import read_folder, resolve_root
    from moola.labeling.page import page_data, write_page
    from moola.labeling.propose import propose, scoring_model, write_record

    root, profile = resolve_root(args.data_dir)
    folder = read_folder(root, profile.data)
    scorer, why = scoring_model(Path(args.artifacts_dir), Path(args.results)) if args.strategy != "random" else (None, "")
    proposal = propose(folder, args.n, args.strategy, args.seed, scorer, why)
    data_arg = f"--data-dir {root}"
    page = write_page(Path(args.out), page_data(folder, proposal, data_arg))
    record_path, chosen = write_record(proposal, folder, page, Path(args.artifacts_dir))
    before = f", not answered neither before ({len(folder.neither)})" if folder.neither else ""
    print(f"{len(chosen)} window(s) to label, chosen by {proposal.strategy} from {proposal.record['n_candidates']} "
          f"pool windows that share no bars with the {len(folder.labeled)} labeled rows{before} "
          f"({proposal.record['seconds']:.0f} s)")
    print(f"  ranked by: {proposal.record.get('model') or 'chance (the comparison strategy)'}")
    print(f"  the page: {page} (open it in a browser; it needs no server and works copied to another machine)")
    print(f"  the record of how they were chosen: {record_path}")
    print(f"next: label them on the page, Export labels.csv, then: python -m moola add-labels labels.csv {data_arg}")
    return 0


def import_ucr(args) -> int:
    from moola.data.ucr import write_ucr

    summary = write_ucr(args.name, Path(args.out))
    print(f"{args.name}: {summary['n_train']} train + {summary['n_val']} val rows of shape {summary['window_shape']}, "
          f"classes {summary['classes']} -> {args.out} (run: pytest gates --data-dir {args.out})")
    return 0


def report(args) -> int:
    from moola.deploy.select import format_selection, judged
    from moola.iterate.family import family_of_run, words
    from moola.report import completeness_problems, format_run, latest_run
    from moola.report.ending import labels_needed
    from moola.results import choose_run, read_lines

    if args.compare and args.run_id:
        raise ValueError("report: expected --run-id RUN or --compare RUN_A RUN_B, found both; "
                         "--compare reports RUN_B, so drop --run-id")
    compared = latest_run(Path(args.results), args.compare[0]) if args.compare else None
    lines, which = choose_run(Path(args.results), args.compare[1] if args.compare else args.run_id,
                              args.include_narrowed)
    recorded = read_lines(Path(args.results))
    family = family_of_run(recorded, lines[0]["run_id"])
    print(f"{args.results}: {which}; {words(family.index_of(lines[0]['run_id']), family.size)}")
    print(format_run(lines, full=args.full, results=args.results))
    print(format_selection(judged(lines, recorded)))
    print(f"labels: {labels_needed(lines)} (python -m moola label-next N proposes which)")
    if args.html:
        from moola.report.page import count_parts, render_html

        page = render_html(lines, results=args.results, compared=compared)
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(page, encoding="utf-8")
        sections, plots = count_parts(page)
        print(f"report written to {args.html} ({sections} sections, {plots} plots)")
    elif compared is not None:
        from moola.report.compare import compare_runs, format_comparison

        print(format_comparison(compare_runs(compared, lines)))
    problems = completeness_problems(lines, args.expect) if args.expect else []
    if args.require_pass:
        problems += [f"{line['gate']} {line['status']}" for line in lines if line["status"] not in ("passed", "warning")]
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


def select(args) -> int:
    import json

    from moola.deploy.select import format_selection, judged
    from moola.results import choose_run, read_lines

    if args.all_runs or args.sweep:
        return select_across(args)
    lines, which = choose_run(Path(args.results), args.run_id, args.include_narrowed)
    selection = judged(lines, read_lines(Path(args.results)))
    print(f"{args.results}: {which}")
    print(format_selection(selection))
    if args.json:
        Path(args.json).write_text(json.dumps(selection.as_dict(), indent=1))
    if selection.recommended is not None:
        print(f"next: python -m moola predict WINDOWS.parquet --out predictions.parquet"
              f"{'' if args.run_id is None else f' --run-id {args.run_id}'}"
              f"{'' if args.results == RESULTS else f' --results {args.results}'}  (uses {selection.recommended.name})")
    return 0


def select_across(args) -> int:
    """`select --all-runs` / `--sweep ID`: every configuration × model on the same rows; the pick is
    recorded for `predict` (`deploy.archive`)."""
    import json

    from moola.deploy.across import choose_across, format_across, mark_pick
    from moola.deploy.archive import record_selection
    from moola.deploy.select import shown_path
    from moola.iterate.family import family_of, rows_key
    from moola.results import choose_run, read_lines, run_ids, shuffled

    if args.run_id:
        raise ValueError("select: --run-id picks one run; --all-runs and --sweep rank every configuration: give one")
    recorded = read_lines(Path(args.results))
    if args.sweep:
        runs = [line for line in recorded if (line.get("family") or {}).get("sweep") == args.sweep]
        if not runs:
            sweeps = [sweep for sweep in dict.fromkeys((line.get("family") or {}).get("sweep") for line in recorded)
                      if sweep]
            raise ValueError(f"{args.results}: expected runs of sweep {args.sweep!r}, found "
                             f"{'sweeps ' + ', '.join(sweeps[-5:]) if sweeps else 'no sweep'}")
        rows = rows_key([line for line in recorded if line["run_id"] == run_ids(runs)[-1]])
    else:
        lines, _ = choose_run(Path(args.results), None, True)
        rows = rows_key(lines)
    control = bool(args.sweep) and shuffled(runs)  # a negative-control sweep: ranked among its own runs
    family = family_of(recorded, rows, controls=control)
    across = choose_across(family, sweep=args.sweep)
    counted = family_of(recorded, rows).size if control else family.size
    print(f"{args.results}: {counted} configuration(s) tried on labeled rows {rows}"
          + (f"; sweep {args.sweep} is a negative control (train labels shuffled): its runs are listed, not counted, "
             "and nothing they trained is delivered" if control else ""))
    print(format_across(across))
    if args.json:
        Path(args.json).write_text(json.dumps(across.as_dict(), indent=1))
    if across.recommended is None:
        return 0
    path, problem = mark_pick(Path(args.artifacts_dir), across)
    if path is None:
        print(f"not recorded for predict: {problem}")
        return 0
    record_selection(Path(args.artifacts_dir), {**across.as_dict(), "results": str(args.results),
                                                "runs": [run for c in family.configurations for run in c.runs],
                                                "path": str(Path(path).relative_to(args.artifacts_dir))})
    print(f"next: python -m moola predict WINDOWS.parquet --out predictions.parquet"
          f"{'' if args.results == RESULTS else f' --results {args.results}'}"
          f"{'' if args.artifacts_dir == 'artifacts' else f' --artifacts-dir {args.artifacts_dir}'}"
          f"  (uses {across.recommended.ranked.name} of configuration {across.recommended.k}: {shown_path(path)})")
    return 0


def sweep(args) -> int:
    from moola.iterate.sweep import parse_grid, run_sweep

    plan = parse_grid(args.grid, args.pytest_options)
    try:
        status = run_sweep(plan)
    except KeyboardInterrupt:  # between two configurations: nothing was running
        print("sweep interrupted; the same command continues it", flush=True)
        return 130
    if status:
        return status
    results = plan.option("--results", RESULTS)
    return select_across(argparse.Namespace(results=results, run_id=None, all_runs=False, sweep=plan.id, json=None,
                                            artifacts_dir=plan.option("--artifacts-dir", "artifacts")))


def predict(args) -> int:
    from moola.deploy.predict import approved_model, check_output, score, summary, write_output
    from moola.seeding import resolve_device

    check_output(Path(args.out), Path(args.windows))
    from moola.data.dataset import csv_instead

    csv = csv_instead(Path(args.windows))  # a CSV given, or beside a missing parquet: the conversion
    if csv:
        raise DataContractError([csv])
    if not Path(args.windows).is_file():  # before loading a model (MiniRocket's kernels compile on first use)
        raise DataContractError([Problem(args.windows, "a parquet file of windows in the data contract",
                                         "no such file" if not Path(args.windows).exists() else "a folder",
                                         "check the path (python -m moola demo-data OUT writes an example)")])
    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:  # a missing device: a usage error, named
        raise ValueError(str(exc)) from None
    deployed, notice = approved_model(Path(args.artifacts_dir), args.model, Path(args.results), args.run_id)
    scored = score(Path(args.windows), deployed, str(device))
    out = write_output(scored, Path(args.out))
    print("\n".join(summary(scored, out, notice)))
    return 0


def main(argv=None) -> int:
    # MiniRocket's numba kernels compile once into the project's cache (as under pytest), not per command
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
    parser = argparse.ArgumentParser(prog="python -m moola", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo-data", help="write an embedded demo dataset (what --demo runs on)")
    demo.add_argument("out", help="folder to write processed/, raw/ and artifacts/splits/ into")
    demo.add_argument("--seed", type=int, default=17)
    demo.add_argument("--layout", default="seed", choices=("seed", "user-layout"),
                      help="seed (timestamps, one span per window) or user-layout (the user's files: no timestamps, "
                           "several spans per window, a sliding pool holding the labeled windows)")
    demo.set_defaults(run=demo_data)
    pool = commands.add_parser("filter-pool", help="drop unlabeled windows that are, or share bars with, val/test rows")
    pool.add_argument("data_dir", help=f"data root holding {LABELED}, {UNLABELED} and {SPLIT}")
    pool.set_defaults(run=filter_pool)
    split = commands.add_parser("make-split", help="write a temporal split for the labeled file")
    split.add_argument("data_dir", help=f"data root holding {LABELED}")
    split.add_argument("--val-fraction", type=float, default=0.2, help="last share of rows (in time) for val")
    split.add_argument("--out", default=None, help=f"where to write (default: DATA_DIR/{SPLIT})")
    split.add_argument("--force", action="store_true",
                       help="overwrite without keeping a backup (default: the old split is kept as fold_0.json.bak[.N])")
    split.set_defaults(run=make_split)
    proposer = commands.add_parser("label-next", help="propose N pool windows to label next, on a labeling page")
    proposer.add_argument("n", type=int, help="how many windows to propose")
    proposer.add_argument("--data-dir", default=None, help="the data root the gates read (default: data; the "
                          "demo's cache is refused: label a copy from python -m moola demo-data DIR)")
    proposer.add_argument("--strategy", default="random", choices=("random", "likely-margin", "margin-diverse"),
                          help="random (default: no strategy beat it in the oracle simulation, docs/labeling.md); "
                               "likely-margin: windows most like the labeled ones, where the recommended model is "
                               "least sure first; margin-diverse: least sure, spread over the pool")
    proposer.add_argument("--out", default="label-next.html", help="the labeling page (default: label-next.html)")
    proposer.add_argument("--artifacts-dir", default="artifacts", help="where the gates saved models")
    proposer.add_argument("--results", default=RESULTS, help="the results file: which model select recommends")
    proposer.add_argument("--seed", type=int, default=17)
    proposer.set_defaults(run=label_next)
    adder = commands.add_parser("add-labels", help="merge the labeling page's CSV into the labeled file")
    adder.add_argument("labels", help="window_id,label,expansion_start,expansion_end (the spans optional for data "
                                      "without spans), as the page from python -m moola label-next exports it")
    adder.add_argument("--data-dir", default="data", help="the data root the gates read (default: data)")
    adder.add_argument("--cv", default=None, choices=("blocked", "walk-forward", "holdout"),
                       help="check the merged folder as gate 0 judges it under this protocol (default: the folder's "
                            "own, else blocked); pass the --cv your gate runs use")
    adder.set_defaults(run=add_labels)
    ucr = commands.add_parser("import-ucr", help="write an sktime-shipped UCR/UEA dataset in the data contract")
    ucr.add_argument("name", help="gunpoint, italy_power_demand, arrow_head, basic_motions, osuleaf, japanese_vowels")
    ucr.add_argument("out", help="folder to write into")
    ucr.set_defaults(run=import_ucr)
    summary = commands.add_parser("report", help="summarise the latest run of the gates in a results file")
    summary.add_argument("results", nargs="?", default=RESULTS)
    summary.add_argument("--run-id", default=None, help="a run other than the latest run of the whole suite")
    summary.add_argument("--include-narrowed", action="store_true",
                         help="the latest run even when it ran part of the suite (-k, --lf, --start-gate …)")
    summary.add_argument("--full", action="store_true", help="print every reason whole (every gate-0 problem)")
    summary.add_argument("--expect", type=int, default=0, metavar="N",
                         help="exit 1 unless the run has N gate lines and no gate crashed (status error)")
    summary.add_argument("--require-pass", action="store_true", help="exit 1 unless every gate passed or warned")
    summary.add_argument("--html", default=None, metavar="PATH",
                         help="also write the run as one self-contained HTML page with plots")
    summary.add_argument("--compare", nargs=2, default=None, metavar=("RUN_A", "RUN_B"),
                         help="run B against run A: status, val_f1, settings, deltas (--html: a section)")
    summary.set_defaults(run=report)
    chooser = commands.add_parser("select", help="rank the run's models and say which one the evidence supports")
    chooser.add_argument("results", nargs="?", default=RESULTS)
    chooser.add_argument("--run-id", default=None, help="a run other than the latest run of the whole suite")
    chooser.add_argument("--include-narrowed", action="store_true",
                         help="the latest run even when it ran part of the suite (-k, --lf, --start-gate …)")
    chooser.add_argument("--json", default=None, metavar="PATH", help="also write the recommendation as JSON")
    chooser.add_argument("--all-runs", action="store_true",
                         help="rank every configuration x model scored on the latest run's labeled rows, on intervals "
                              "that count every configuration tried; predict then uses its pick")
    chooser.add_argument("--sweep", default=None, metavar="ID",
                         help="rank the configurations of sweep ID (python -m moola sweep) the same way")
    chooser.add_argument("--artifacts-dir", default="artifacts",
                         help="where the runs saved their models (--all-runs/--sweep record the pick there)")
    chooser.set_defaults(run=select)
    sweeper = commands.add_parser(
        "sweep", help="run the gates once per configuration of a grid, then choose across them (select --sweep)",
        description="python -m moola sweep --grid KEY=V1,V2 [--grid …] [-- PYTEST OPTIONS]: every configuration of "
                    "the grid runs the whole suite (pytest gates OPTIONS --set KEY=V …) on the same data; the same "
                    "command again continues an interrupted sweep. Then select --sweep ranks every configuration x "
                    "model on intervals that count every configuration tried on the rows (docs/iterate.md)")
    sweeper.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                         help="a setting and its values (repeatable; the sweep runs their product), e.g. "
                              "pretrain.mask_strategy=random,block,patch")
    sweeper.set_defaults(run=sweep, pytest_options=[])
    scorer = commands.add_parser("predict", help="score windows with the recommended model (moola select)")
    scorer.add_argument("windows", help="a parquet file of windows in the data contract (a label column is optional)")
    scorer.add_argument("--out", required=True, help="where to write the predictions: .parquet or .csv")
    scorer.add_argument("--model", default="recommended",
                        choices=("recommended", "ensemble", "finetuned", "augmented", "minirocket", "baseline"),
                        help="which model (default: the one moola select recommends for the latest run of the gates)")
    scorer.add_argument("--run-id", default=None,
                        help="with --model recommended: that run's recommendation instead of the latest run's")
    scorer.add_argument("--artifacts-dir", default="artifacts", help="where the gates saved models (default: artifacts)")
    scorer.add_argument("--results", default=RESULTS,
                        help="the results file: which model select recommends, which gate failed when none is approved")
    scorer.add_argument("--device", default="cpu",
                        help="cpu (default), cuda, mps or auto: where the networks run (10,000 windows: ~10 s on a "
                             "16-core CPU, well under a second on a GPU)")
    scorer.set_defaults(run=predict)
    argv = list(sys.argv[1:] if argv is None else argv)
    passed = argv[argv.index("--") + 1:] if "--" in argv else []  # sweep: the gate run's own options
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if passed and args.command != "sweep":
        parser.error(f"{args.command}: options after -- are for python -m moola sweep only, found {' '.join(passed)}")
    if args.command == "sweep":
        args.pytest_options = passed
    try:
        return args.run(args)
    except (DataContractError, ValueError, OSError) as exc:  # OSError: a folder that cannot be written, say
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
