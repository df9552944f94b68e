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

from moola.data.dataset import fingerprint
from moola.data.errors import DataContractError, Problem
from moola.data.parquet import WindowTable, read_windows
from moola.data.validate import check_ohlc
from moola.deployment import MODELS, Deployed, DeploymentError, approval, load_deployed
from moola.evaluation.crossfit import block_resample, default_run_length
from moola.results import read_lines
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


def approved_model(artifacts_dir: Path, kind: str, results: Path) -> tuple[Deployed, str | None]:
    """The approved `kind` model under `artifacts_dir`, or a DeploymentError naming why not and the fix."""
    if kind not in MODELS:
        raise DeploymentError(f"--model: expected one of {', '.join(MODELS)}, found {kind!r}")
    path = Path(artifacts_dir) / MODELS[kind]
    if not path.is_file():
        raise DeploymentError(f"no {kind} model at {path}: " + latest_run_story(results, kind) +
                              f". Fix: get the gates to pass (pytest gates -x), or pass --artifacts-dir where a run "
                              f"saved one{'' if kind != 'ensemble' else ', or try --model finetuned'}")
    deployed = load_deployed(path, kind)
    approved, said = approval(deployed.metadata, kind)
    if not approved:
        raise DeploymentError(f"{path} is not approved: {said}; " + latest_run_story(results, kind) +
                              ". Fix: get its gate to pass (pytest gates -x); predicting with an unapproved model "
                              "is what the gates exist to prevent")
    status = (deployed.metadata.get("gate") or {}).get("status")
    notice = f"{said}: approved with a warning" if status == "warning" else None
    if kind == "baseline":
        notice = f"{said}: SimpleLSTM is gate 6's comparison model, not the deliverable"
    return deployed, notice


def latest_run_story(results: Path, kind: str) -> str:
    """Which gate stopped the latest run in `results`, in one clause."""
    try:
        lines = read_lines(results)
    except Exception as exc:  # noqa: BLE001 -- a damaged results file must not hide the real error
        return f"the results file {results} could not be read ({type(exc).__name__})"
    if not lines:
        return f"no gate run is recorded in {results}"
    run_id = lines[-1]["run_id"]
    run = [line for line in lines if line["run_id"] == run_id]
    stopped = [line for line in run if line["status"] in ("failed", "error")]
    if stopped:
        first = stopped[0]
        reason = str(first.get("reason") or "").splitlines()[0][:200]
        return f"in the latest run ({run_id}, {results}) gate {first['gate']} {first['status']}: {reason}"
    skipped = [line for line in run if line["status"] in ("skipped", "not_run")]
    if skipped:
        return f"in the latest run ({run_id}) gate {skipped[0]['gate']} {skipped[0]['status']}: " \
               f"{str(skipped[0].get('reason') or '')[:200]}"
    return f"the latest run ({run_id}) ran gates {', '.join(line['gate'] for line in run)} and none failed"


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
    problems = []
    if found_shape != expected_shape:
        bars, channels = expected_shape
        problems.append(Problem(where, f"windows of {bars} bars x {channels} values ({deployed.input['channels']}: "
                                       "the layout the model was trained on)",
                                f"{found_shape[0]} bars x {found_shape[1]} values",
                                f"cut windows of {bars} bars with the same {channels} values per bar, in the same order"))
    elif deployed.input.get("channels") == "ohlc" and np.isfinite(table.features).all():  # else already reported
        problems += check_ohlc(table)
    if table.labels is not None:
        unknown = sorted(set(table.labels.tolist()) - set(deployed.classes))
        if unknown:
            problems.append(Problem(f"{table.path} column 'label'", f"labels among the model's classes {deployed.classes}",
                                    f"{unknown}", "rename them, or drop the label column to predict without scoring"))
    return problems


def score(windows: Path, deployed: Deployed, device: str = "cpu", resamples: int = 1000, seed: int = 17) -> Scored:
    """Probabilities for every window of `windows`, and macro F1 with its CI when labels are present."""
    table = read_input(windows, deployed)
    started = time.monotonic()
    proba = deployed.predict_proba(table.features, device)  # (n, K)
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
    """Macro F1 with a block-bootstrap 95% CI over the windows in time order (file order without timestamps)."""
    index = {name: k for k, name in enumerate(classes)}
    y = np.array([index[label] for label in table.labels])
    pred = proba.argmax(axis=1)
    order = np.argsort(table.timestamps, kind="stable") if table.timestamps is not None else np.arange(len(y))
    y, pred = y[order], pred[order]
    run_length = default_run_length(len(y))
    rows = block_resample(len(y), resamples, run_length, np.random.default_rng(seed))  # (B, n)
    low, high = np.percentile(macro_f1_rows(y[rows], pred[rows], len(classes)), [2.5, 97.5])
    in_sample = fingerprint(np.asarray(table.features, dtype=np.float64)) == metadata.get("labeled_fingerprint")
    return {"f1": macro_f1(y, pred, len(classes)), "ci95": [float(low), float(high)], "n": len(y),
            "run_length": run_length, "in_sample": in_sample}


def write_output(scored: Scored, out: Path) -> Path:
    out = Path(out)
    if out.suffix not in OUTPUTS:
        raise ValueError(f"--out {out}: expected a file ending in {' or '.join(OUTPUTS)}, found {out.suffix!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
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
        if f1["in_sample"]:
            lines.append("note: these are the labeled windows the saved models trained on: this F1 is in-sample, not "
                         "an estimate (the gate lines hold the out-of-fold one)")
    return lines
