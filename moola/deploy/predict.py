"""`python -m moola predict WINDOWS --out FILE`: score new windows with an approved model.

Reads windows in the data contract (labels optional), checks them against the model's input
contract, writes one row per window (calibrated class probabilities, the predicted label, the
members used) and, when the file has labels, prints macro F1 with a block-bootstrap 95% CI.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from moola import artifacts, recipe
from moola.data.errors import DataContractError, Problem
from moola.data.inputs import InputSpec, read_hashes
from moola.data.parquet import WindowTable, read_windows
from moola.data.validate import check_ohlc, labeled_hashes
from moola.deploy.model import MODELS, Deployed, DeploymentError, approval, load_deployed, saved_refit_failures
from moola.evaluation.crossfit import block_resample, default_run_length
from moola.results import choose_run, read_lines, run_ids
from moola.training.metrics import macro_f1, macro_f1_rows

log = logging.getLogger(__name__)
OUTPUTS = (".parquet", ".csv")


@dataclass
class Scored:
    """What `score` computed: the output table and the numbers printed beside it."""

    table: pd.DataFrame
    deployed: Deployed
    seconds: float
    f1: dict | None = None  # {"f1", "ci95", "n", "run_length", "in_sample"} when the windows carry labels
    device: str = "cpu"


def approved_model(artifacts_dir: Path, kind: str, results: Path, run_id: str | None = None
                   ) -> tuple[Deployed, str | None]:
    """The `kind` model under `artifacts_dir` if its gate approved it ("recommended": the model
    `moola select` recommends for the latest run of the whole suite, or `run_id`), or a
    DeploymentError naming why not and the fix."""
    if kind == "recommended":
        return recommended_model(Path(artifacts_dir), Path(results), run_id)
    if kind not in MODELS:
        raise DeploymentError(f"--model: expected recommended or one of {', '.join(MODELS)}, found {kind!r}")
    path = Path(artifacts_dir) / MODELS[kind]
    if not path.is_file():
        raise DeploymentError(f"no {kind} model at {path}: " + latest_run_story(results, kind) +
                              f". {usable_models(Path(artifacts_dir))}. Fix: get the gates to pass (pytest gates -x), "
                              "or pass --artifacts-dir where a run saved one")
    deployed = load_deployed(path, kind)
    approved, said = approval(deployed.metadata, kind)
    if not approved:
        raise DeploymentError(f"{path} is not approved: {said}; " + latest_run_story(results, kind) +
                              f". {usable_models(Path(artifacts_dir))}. Fix: get its gate to pass (pytest gates -x); "
                              "predicting with an unapproved model is what the gates exist to prevent")
    gate = deployed.metadata.get("gate") or {}
    notices = [f"{said}: approved with a warning"] if gate.get("status") == "warning" else [f"{said}: approved"]
    if kind == "minirocket":
        notices = [said]
    if kind == "baseline":
        notices.append("SimpleLSTM is gate 6's comparison model, not the deliverable")
    notices += calibration_note(deployed)
    notices += scored_by(deployed, kind, Path(results), run_id)
    return deployed, "; ".join(notices)


def scored_by(deployed: Deployed, kind: str, results: Path, run_id: str | None) -> list[str]:
    """`--model X`: the file checked against the run whose numbers stand for it (`--run-id`, else the
    latest run of the gates; when that run did not score the file's gate, the run that saved it, on
    the same data). Raises DeploymentError when they differ; returns notices."""
    metadata = deployed.metadata
    gate = metadata.get("gate") or {}
    try:
        recorded = read_lines(results)
        if not recorded and run_id is None:
            return [f"not compared with any run's results: no results lines at {results} (pass --results FILE)"]
        lines, which = choose_run(results, run_id)
    except ValueError as exc:  # a damaged file (a line cut off mid-write), or no such run
        raise DeploymentError(f"--model {kind} is checked against the run whose numbers stand for it: {exc}. Fix: "
                              f"python -m moola report {results} lists the runs") from None
    line = gate_line(lines, gate.get("gate"))
    notices = []
    if line is None or line.get("status") in ("skipped", "not_run", "error"):
        data = (lines[0].get("data") or {}).get("fingerprint")
        if data and metadata.get("data_fingerprint") and data != metadata["data_fingerprint"]:
            raise DeploymentError(f"{deployed.path} was trained on other data (fingerprint "
                                  f"{metadata['data_fingerprint']}) than {which} read ({data}). Fix: rerun the gates "
                                  "on this data (pytest gates -x), or pass --run-id of the run that saved the file")
        said = f"{which} did not score gate {gate.get('gate')}"
        try:
            lines, which = choose_run(results, gate.get("run_id"))
        except ValueError:
            return [f"{said}, and the run that saved the file ({gate.get('run_id')}) is not in {results}"]
        line = gate_line(lines, gate.get("gate"))
        notices.append(said)
        if line is None:
            return notices
    problems = delivery_problems(metadata, line, kind)
    if problems:
        raise DeploymentError(f"{deployed.path} is not the model whose numbers {which} holds: {'; '.join(problems)}. "
                              "Fix: " + matching_fix(results, metadata, line))
    return [*notices, f"the recipe and verdict scored in {which}"]


def gate_line(lines: list[dict], gate: str | None) -> dict | None:
    """The run's line for `gate` (None when the run wrote none)."""
    return next((line for line in lines if line["gate"] == gate), None)


def recommended_model(artifacts_dir: Path, results: Path, run_id: str | None = None) -> tuple[Deployed, str]:
    """The model `moola select` recommends for the run (computed from its results lines), read from
    the file that run saved."""
    from moola.deploy.select import judged

    across, stale = (None, None) if run_id is not None else cross_run_pick(artifacts_dir, results)
    if across is not None:
        return across
    try:
        lines, which = choose_run(results, run_id)
    except ValueError as exc:
        raise DeploymentError(f"--model recommended reads the gates' results to know which model to use: {exc}. "
                              "Fix: pass --results FILE (the file the gates wrote), or name a model with --model "
                              f"({usable_models(artifacts_dir)})") from None
    selection = judged(lines, read_lines(results))
    chosen = selection.recommended
    if chosen is None:
        reasons = "; ".join(f"{r.name}: {r.why_not}" for r in selection.ranked if r.why_not)[:600]
        raise DeploymentError(f"{which}: moola select recommends no model ({reasons}). Fix: python -m moola select "
                              f"{results} shows the ranking; {latest_run_story(results, 'recommended', run_id)}")
    path = artifacts_dir / MODELS[chosen.name]
    if not path.is_file():
        raise DeploymentError(f"{which} recommends {chosen.name}, and there is no file at {path}. Fix: copy the "
                              "models folder of the machine that ran the gates (section After the gates), or pass "
                              "--artifacts-dir where that run saved them")
    deployed = load_deployed(path, chosen.name)
    line = gate_line(lines, chosen.gate)
    problems = delivery_problems(deployed.metadata, line, chosen.name, selected=True)
    if problems:
        raise DeploymentError(f"{which} recommends {chosen.name}, but {path} is not the model whose numbers that run "
                              f"printed: {'; '.join(problems)}. Fix: " + matching_fix(results, deployed.metadata, line))
    file_run = (deployed.metadata.get("gate") or {}).get("run_id")
    if file_run != selection.run_id:
        which += f"; {path} was saved again by run {file_run}, with the same recipe and verdict"
    ci = chosen.f1_ci95
    said = (f"recommended by moola select for {which}: {chosen.name}, pooled out-of-fold macro F1 "
            f"{chosen.f1:.3f} [{ci[0]:.3f}, {ci[1]:.3f}], trained in {chosen.cost_s or 0:.0f} s (rule: {selection.rule})")
    return deployed, "; ".join([said, *calibration_note(deployed), *([stale] if stale else [])])


def cross_run_pick(artifacts_dir: Path, results: Path) -> tuple:
    """`((deployed, notice), None)` when `select --all-runs`/`--sweep` recorded a pick for `results`
    and no run on the same rows was recorded since; else `(None, why it is not used, or None)`."""
    from moola.deploy.archive import read_selection
    from moola.iterate.family import counted

    record = read_selection(artifacts_dir)
    if not record or not record.get("recommended") or not record.get("runs"):
        return None, None
    recorded = read_lines(results)
    runs = run_ids(recorded)
    if not set(record["runs"]) <= set(runs):  # the pick was made on another results file
        return None, None
    last = max(runs.index(run) for run in record["runs"])
    later = [run for run in runs[last + 1:] if counted([line for line in recorded if line["run_id"] == run])]
    if later:
        return None, (f"the pick of python -m moola select --all-runs/--sweep ({record['written']}) predates run(s) "
                      f"{', '.join(later[-3:])}, so it no longer counts every configuration tried: rerun select "
                      "--all-runs to choose across all of them")
    pick = record["recommended"]
    path = Path(artifacts_dir) / record["path"]  # kept relative to the artifacts folder: it travels with it
    if not path.is_file():
        raise DeploymentError(f"moola select chose {pick['model']} of run {pick['run_id']} ({record['written']}), and "
                              f"there is no file at {path}. Fix: copy the artifacts folder of the machine that ran the "
                              "gates (runs/ included), or rerun python -m moola select --all-runs")
    deployed = load_deployed(path, pick["model"])
    line = gate_line([one for one in recorded if one["run_id"] == pick["run_id"]], pick["gate"])
    problems = delivery_problems(deployed.metadata, line or {}, pick["model"], selected=True)
    if line is None or problems:
        raise DeploymentError(f"moola select chose {pick['model']} of run {pick['run_id']}, but {path} is not the model "
                              f"whose numbers that run printed: {'; '.join(problems) or 'the run has no such line'}. "
                              "Fix: rerun python -m moola select --all-runs")
    nested = record.get("nested") or {}
    said = (f"recommended by moola select across {record['configurations']} configuration(s) tried on these rows"
            f"{' (sweep ' + record['sweep'] + ')' if record.get('sweep') else ''}: {pick['model']} of configuration "
            f"{pick['configuration']} ({pick['label']}), run {pick['run_id']}, pooled out-of-fold macro F1 "
            f"{pick['f1']:.3f}" + (f"; choosing this way delivers about {nested['f1']:.3f} (nested estimate)"
                                   if nested.get("f1") is not None else "") + f" (rule: {record['rule']})")
    return (deployed, "; ".join([said, *calibration_note(deployed)])), None


def calibration_note(deployed: Deployed) -> list:
    """An ensemble's probabilities are calibrated by its recipe's maps, not fitted to the refits it holds."""
    if deployed.kind != "ensemble" or not deployed.metadata.get("calibration"):
        return []
    return [f"calibration: {deployed.metadata['calibration']}"]


def delivery_problems(metadata: dict, line: dict, kind: str, selected: bool = False) -> list[str]:
    """Why a model file is not the model whose numbers `line` holds (empty: it is): trained by
    another recipe (`moola.recipe`), or judged otherwise by its gate. `selected`: `moola select`
    recommended it on that run's lines (MiniRocket needs no mark of its own then)."""
    gate = metadata.get("gate") or {}
    file_run, line_run = gate.get("run_id"), line.get("run_id")
    problems = []
    if file_run != line_run:
        if not metadata.get("recipe") or not line.get("recipe"):
            problems.append(f"it was saved by run {file_run}, not by run {line_run}, and one of them was written "
                            "before moola recorded recipes, so they cannot be shown to be the same")
        else:
            differ = recipe.differences(metadata["recipe"], line["recipe"])
            if differ:
                problems.append(f"it was trained by run {file_run} with another recipe than run {line_run}'s "
                                f"(the file's vs the run's: {'; '.join(differ)})")
    if gate.get("status") != line.get("status"):
        problems.append(f"its gate {line['gate']} said {gate.get('status')} of it (run {file_run}), "
                        f"{line.get('status')} in run {line_run}")
    if metadata.get("train_labels_shuffled"):
        problems.append("it is a negative-control model (train labels shuffled)")
    elif selected and kind == "minirocket":  # the run's own ranking approved the control
        problems += saved_refit_failures(metadata)
    else:
        approved, said = approval(metadata, kind)
        if not approved:
            problems.append(f"it is not approved: {said}")
    return problems


def matching_fix(results: Path, metadata: dict, line: dict) -> str:
    """The commands that make the file and the printed numbers match again."""
    file_run = (metadata.get("gate") or {}).get("run_id")
    fixes = []
    if file_run is not None and file_run != line.get("run_id"):
        try:
            choose_run(results, file_run)
            fixes.append(f"pass --run-id {file_run} to predict with the numbers of the run that saved the file")
        except (ValueError, OSError):
            pass
    if line.get("recipe"):
        fixes.append(f"train run {line['run_id']}'s recipe again on the same data, so its file is saved again "
                     f"({recipe.gate_command(line['recipe'])}, with the same data options)")
    else:
        fixes.append("rerun the gates (pytest gates -x)")
    return "; or ".join(fixes)


def usable_models(artifacts_dir: Path) -> str:
    """The models under `artifacts_dir` that predict would accept, in words."""
    usable = []
    for kind, relative in MODELS.items():
        path = artifacts_dir / relative
        if not path.is_file():
            continue
        try:
            metadata = artifacts.load_checkpoint(path)[1]
        except Exception:  # noqa: BLE001, S112 -- a damaged file is not usable; predicting with it says why
            continue
        if approval(metadata, kind)[0]:
            usable.append(f"--model {kind}")
    return ("models predict accepts here: " + ", ".join(usable)) if usable else \
        f"no model under {artifacts_dir} is approved"


def latest_run_story(results: Path, kind: str, run_id: str | None = None) -> str:
    """Which gate stopped the latest run of the gates in `results`, in one clause."""
    try:
        lines = read_lines(results)
    except Exception as exc:  # noqa: BLE001 -- a damaged results file must not hide the real error
        return f"the results file {results} could not be read ({type(exc).__name__})"
    if not Path(results).is_file():
        return f"there is no results file at {results} (pass --results FILE to name the one the gates wrote)"
    if not lines:
        return f"no gate run is recorded in {results}"
    run, _ = choose_run(results, run_id)
    run_id = run[0]["run_id"]
    stopped = [line for line in run if line["status"] in ("failed", "error")]
    if stopped:
        first = stopped[0]
        reason = _clause(first.get("reason"))
        return f"in the latest run ({run_id}, {results}) gate {first['gate']} {first['status']}: {reason}"
    skipped = [line for line in run if line["status"] in ("skipped", "not_run")]
    if skipped:
        return f"in the latest run ({run_id}) gate {skipped[0]['gate']} {skipped[0]['status']}: " \
               f"{_clause(skipped[0].get('reason'))}"
    return f"the latest run ({run_id}) ran gates {', '.join(line['gate'] for line in run)} and none failed"


def _clause(reason, limit: int = 200) -> str:
    """A reason's first line, cut at a word."""
    text = (str(reason or "").splitlines() or [""])[0]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def read_input(path: Path, deployed: Deployed) -> WindowTable:
    """Windows checked against the model's input contract; every problem at once, with its fix."""
    path = Path(path)
    if not path.exists():
        raise DataContractError([Problem(str(path), "a parquet file of windows in the data contract", "no such file",
                                         "check the path (python -m moola demo-data OUT writes an example)")])
    labeled = _has_column(path, "label")
    table, problems = read_windows(path, labeled=labeled)
    if table is not None:
        problems += contract_problems(table, deployed)
    if problems or table is None:
        raise DataContractError(problems)
    return table


def _has_column(path: Path, name: str) -> bool:
    try:
        return name in pq.read_schema(path).names
    except Exception:  # noqa: BLE001 -- read_windows reports an unreadable file with its fix
        return False


def contract_problems(table: WindowTable, deployed: Deployed) -> list:
    where = f"{table.path} column 'features'"
    expected_shape = tuple(deployed.input["window_shape"])
    found_shape = tuple(table.features.shape[1:])
    spec = deployed.spec
    problems = []
    read = spec.bars(expected_shape[0])  # bars the model reads: windows may stop there (the decision point)
    cut = spec.visible_bars or spec.span_bars  # windows may be shorter than the trained ones
    if found_shape[1:] != expected_shape[1:] or not read <= found_shape[0] <= expected_shape[0] or (
            found_shape[0] != expected_shape[0] and not cut):
        bars, channels = expected_shape
        span = f"{read} to {bars}" if read < bars else f"{bars}"
        problems.append(Problem(where, f"windows of {span} bars x {channels} values ({deployed.input['channels']}: "
                                       "the layout the model was trained on"
                                       + (f"; it reads bars 0..{read - 1}" if read < bars else "") + ")",
                                f"{found_shape[0]} bars x {found_shape[1]} values",
                                f"cut windows of {span} bars with the same {channels} values per bar, in the same order"))
    elif spec.needs_spans and table.expansion is None:
        problems.append(Problem(f"{table.path} columns 'expansion_start', 'expansion_end'", "the span to classify in "
                                "each window (integer first and last bar): this model reads it as an input",
                                "no such columns", "add them (the pattern's bars, as in the labeled file), or use a "
                                "model trained with --set data.span_bars=0 --set data.span_input=false"))
    elif spec.needs_spans and bad_spans(table, spec, read).any():
        bad = bad_spans(table, spec, read)
        inside = (f"ending at bar {spec.span_bars - 1} or later inside the window, at most {spec.span_bars} bars "
                  f"long (the model reads the {spec.span_bars} bars ending at the span)" if spec.span_bars else
                  f"inside the bars the model reads (0..{read - 1})")
        problems.append(Problem(f"{table.path} columns 'expansion_start', 'expansion_end'",
                                f"spans with start <= end {inside}",
                                f"{int(bad.sum())} row(s) outside, e.g. {table.window_ids[bad][:3].tolist()}",
                                "correct those spans"))
    elif deployed.input.get("channels") == "ohlc" and np.isfinite(table.features).all():  # else already reported
        problems += check_ohlc(table)
    if table.labels is not None:
        unknown = sorted(set(table.labels.tolist()) - set(deployed.classes))
        if unknown:
            problems.append(Problem(f"{table.path} column 'label'", f"labels among the model's classes {deployed.classes}",
                                    f"{unknown}", "rename them, or drop the label column to predict without scoring"))
    return problems


def bad_spans(table: WindowTable, spec, read: int) -> np.ndarray:
    """`(n,)` rows whose span the model cannot read: reversed, before bar 0, past the bars it reads, or
    (span-aligned view) ending before the view's first bar or past the window."""
    start, end = table.expansion[:, 0], table.expansion[:, 1]
    bad = (start > end) | (start < 0)
    if spec.span_bars:  # the view must hold the whole span, as gate 0 required of the labeled rows
        return bad | (end < spec.span_bars - 1) | (end >= table.features.shape[1]) | (end - start + 1 > spec.span_bars)
    return bad | (end >= read)


def score(windows: Path, deployed: Deployed, device: str = "cpu", resamples: int = 1000, seed: int = 17) -> Scored:
    """Probabilities for every window of `windows`, and macro F1 with its CI when labels are present."""
    table = read_input(windows, deployed)
    started = time.monotonic()
    proba = deployed.predict_proba(table.features, device, spans=table.expansion)  # (n, K)
    seconds = time.monotonic() - started
    classes = deployed.classes
    members = "+".join(m.name for m in deployed.members) + ("" if deployed.calibrated else " (uncalibrated softmax)")
    out = pd.DataFrame({"window_id": table.window_ids.astype(str)})
    for k, name in enumerate(classes):
        out[f"p_{name}"] = proba[:, k]
    out["predicted"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    out["members"] = members
    f1 = None
    if table.labels is not None:
        out["label"] = table.labels.astype(str)
        f1 = labeled_f1(table, proba, classes, deployed.metadata, resamples, seed)
    return Scored(out, deployed, seconds, f1, device)


def labeled_f1(table: WindowTable, proba: np.ndarray, classes: list, metadata: dict, resamples: int, seed: int) -> dict:
    """Macro F1 with a block-bootstrap 95% CI over the windows in time order (file order without
    timestamps); and the same over the windows the model never saw (rows of the labeled file the
    gates used are in-sample for a refit model and its calibrator)."""
    index = {name: k for k, name in enumerate(classes)}
    y = np.array([index[label] for label in table.labels])
    if metadata.get("labeled_read_hashes") is not None:  # what the model read: cut windows, spans
        spec = InputSpec.from_record(metadata.get("input") or {})
        seen = np.isin(read_hashes(table.features, spec, table.expansion), metadata["labeled_read_hashes"])
    else:  # files written before it: whole windows
        seen = np.isin(labeled_hashes(table.features), metadata.get("labeled_window_hashes") or [])
    order = np.argsort(table.timestamps, kind="stable") if table.timestamps is not None else np.arange(len(y))
    result = {"n": len(y), "n_seen": int(seen.sum()), **_f1_ci(y[order], proba[order].argmax(1), len(classes),
                                                              resamples, seed)}
    unseen = order[~seen[order]]
    if 0 < len(unseen) < len(y):
        result["unseen"] = {"n": len(unseen), **_f1_ci(y[unseen], proba[unseen].argmax(1), len(classes),
                                                       resamples, seed)}
    return result


def _f1_ci(y: np.ndarray, pred: np.ndarray, n_classes: int, resamples: int, seed: int) -> dict:
    run_length = default_run_length(len(y))
    rows = block_resample(len(y), resamples, run_length, np.random.default_rng(seed))  # (B, n)
    low, high = np.percentile(macro_f1_rows(y[rows], pred[rows], n_classes), [2.5, 97.5])
    return {"f1": macro_f1(y, pred, n_classes), "ci95": [float(low), float(high)], "run_length": run_length}


def check_output(out: Path, windows: Path) -> Path:
    """`--out`: a .parquet or .csv file that is not the input (checked before any work)."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUTS:
        raise ValueError(f"--out {out}: expected a file ending in {' or '.join(OUTPUTS)}, found {out.suffix!r}")
    if out.resolve() == Path(windows).resolve():
        raise ValueError(f"--out {out} is the windows file it would read: expected another path "
                         "(e.g. predictions.parquet); the windows are left as they are")
    return out


def write_output(scored: Scored, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        scored.table.to_csv(tmp, index=False)
    else:
        scored.table.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def summary(scored: Scored, out: Path, notice: str | None) -> list:
    """The lines `predict` prints."""
    table, deployed = scored.table, scored.deployed
    counts = table["predicted"].value_counts().to_dict()
    lines = [(f"{len(table)} windows scored in {scored.seconds:.2f} s on {scored.device} with {deployed.kind} "
              f"({deployed.path}; members {table['members'].iloc[0] if len(table) else '-'}) -> {out}"),
             "predicted: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in deployed.classes)]
    if notice:
        lines.append(f"note: {notice}")
    if scored.f1:
        f1 = scored.f1
        lines.append(f"macro F1 {f1['f1']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}] over {f1['n']} labeled windows "
                     f"(95% block bootstrap, runs of {f1['run_length']} windows in time order)")
        if f1["n_seen"]:
            lines.append(f"note: {f1['n_seen']} of these {f1['n']} windows are rows of the labeled file the gates used "
                         "(to train, calibrate or score these models): their F1 is in-sample, not an estimate (the "
                         "gate lines hold the out-of-fold one)")
        if "unseen" in f1:
            other = f1["unseen"]
            lines.append(f"macro F1 on the {other['n']} windows never seen: {other['f1']:.3f} "
                         f"[{other['ci95'][0]:.3f}, {other['ci95'][1]:.3f}]")
    return lines
