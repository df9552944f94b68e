"""The results file: one JSON line per gate outcome (SPEC §6), built by pure functions."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

import moola

GATES = {
    0: "0_verify_env",
    1: "1_smoke_enhanced",
    2: "2_control_minirocket",
    3: "3_pretrain_bilstm",
    4: "4_finetune_enhanced",
    5: "5_augment_train",
    6: "6_baseline_simplelstm",
    7: "7_ensemble",
}
STATUSES = ("passed", "failed", "error", "skipped", "warning", "not_run")


class GateWarning(UserWarning):
    """A gate whose rule is advisory (6, 7) fell short: the run goes on, the line says `warning`."""


def jsonable(value):
    """Plain JSON data from numpy scalars/arrays, tuples, paths and non-finite floats (-> None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def versions(root: Path | None = None) -> dict:
    import torch

    git = None
    root = root if root is not None else Path(moola.__file__).resolve().parents[1]  # the checkout, when there is one
    if (Path(root) / ".git").exists():
        try:
            git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                 text=True, timeout=5, check=False).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            git = None
    return {"moola": moola.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "git": git}


def build_line(gate: str, status: str, *, run_id: str, reason: str | None = None, duration_s: float = 0.0,
               model: str | None = None, config: dict | None = None, metrics: dict | None = None,
               comparison: dict | None = None, artifacts: dict | None = None, extra: dict | None = None,
               context: dict | None = None, now: _dt.datetime | None = None) -> dict:
    """One results line. `context` carries the run-wide fields: profile, device, seed, data, versions."""
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {STATUSES}, found {status!r}")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    line = {
        "gate": gate,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_id": run_id,
        "status": status,
        "model": model,
        "config": config or {},
        "metrics": metrics or {},
        "comparison": comparison,
        "reason": reason,
        "duration_s": round(float(duration_s), 3),
        "artifacts": artifacts or {},
    }
    line.update(extra or {})
    context = context or {}
    for key in ("profile", "device", "runtime", "seed", "data", "evaluation", "scope", "versions", "recipe", "family"):
        line[key] = context.get(key)
    return jsonable(line)


def append_line(path: Path, line: dict) -> None:
    """Append one line with a single O_APPEND write, so concurrent writers never interleave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = (json.dumps(line, sort_keys=False, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not a JSON results line ({exc.msg}: a run killed mid-write, or "
                             "an edited file). Fix: delete that line (the other runs' lines stay readable)") from None
    return lines


def run_ids(lines: list[dict]) -> list[str]:
    """Run ids in the order their first line was written."""
    return list(dict.fromkeys(line["run_id"] for line in lines))


def narrowed(run_lines: list[dict]) -> bool:
    """A run that selected part of the suite (-k, --lf, a file, --start-gate/--end-gate …): its
    `scope` says so; a line written before `scope` existed counts as narrowed when the run lacks a
    line for some gate."""
    scope = run_lines[0].get("scope") if run_lines else None
    if isinstance(scope, dict) and "narrowed" in scope:
        return bool(scope["narrowed"])
    return {line["gate"] for line in run_lines} != set(GATES.values())


def choose_run(path: Path, run_id: str | None = None, include_narrowed: bool = False) -> tuple[list[dict], str]:
    """The lines of `run_id`, else of the latest run that ran the gates (narrowed runs skipped
    unless `include_narrowed`, or unless no other run exists), and one sentence saying which."""
    lines = read_lines(path)
    if not lines:
        raise ValueError(f"{path}: expected results lines, found none; run pytest gates first")
    runs = run_ids(lines)
    by_run = {run: [line for line in lines if line["run_id"] == run] for run in runs}
    if run_id is not None:
        if run_id not in by_run:
            raise ValueError(f"{path}: expected a run with id {run_id!r}, found runs {', '.join(runs[-5:])}"
                             f"{' (the last 5)' if len(runs) > 5 else ''}")
        return by_run[run_id], f"run {run_id} (--run-id)"
    full = [run for run in runs if not narrowed(by_run[run]) and not shuffled(by_run[run])]
    if include_narrowed or not full:
        chosen = runs[-1]
        kind = "the latest run" + ("" if not narrowed(by_run[chosen]) else
                                   f", a narrowed one ({describe_scope(by_run[chosen])}): no run of the whole suite "
                                   "is recorded" if not full else f", narrowed ({describe_scope(by_run[chosen])})")
        return by_run[chosen], f"run {chosen} ({kind})"
    chosen = full[-1]
    later = runs[runs.index(chosen) + 1:]
    said = f"run {chosen} (the latest run of the whole suite"
    if later:
        said += (f"; {len(later)} later narrowed or negative-control run(s) skipped: "
                 + ", ".join(f"{run} ({describe_scope(by_run[run])})" for run in later[-3:])
                 + "; pass --run-id RUN to see one")
    return by_run[chosen], said + ")"


def shuffled(run_lines: list[dict]) -> bool:
    """A negative-control run (`--shuffle-labels`): it delivers nothing, so it is never "the latest run"."""
    return any(str((line.get("data") or {}).get("train_labels", "")).startswith("shuffled") for line in run_lines)


def describe_scope(run_lines: list[dict]) -> str:
    if shuffled(run_lines):
        return "negative control"
    scope = run_lines[0].get("scope") if run_lines else None
    if isinstance(scope, dict) and scope.get("selection"):
        return str(scope["selection"])
    return "gates " + ", ".join(line["gate"].split("_")[0] for line in run_lines)


# A gate whose model is built on another gate's recipe: its model is delivered only when that gate's
# rule held on the same run's numbers, recorded in its line and file (`metadata["gate"]["requires"]`).
# The augmented recipe is gate 4's plus synthetic rows, and gate 5 compares against gate 4's numbers.
REQUIRES = {"5_augment_train": ("4_finetune_enhanced",)}


def requirements_hold(gate: str | None, requires: dict | None) -> tuple[bool, str]:
    """Whether every gate `gate` builds on is recorded as holding (`requires`: gate -> {"holds",
    "failures"}), and the words why not."""
    for needed in REQUIRES.get(gate, ()):
        record = (requires or {}).get(needed)
        if not record:
            return False, f"gate {needed}'s rule is not recorded as judged on the same run's numbers"
        if not record.get("holds"):
            return False, f"gate {needed}'s rule fails on the same run's numbers: " + "; ".join(record.get("failures") or [])
    return True, ""
