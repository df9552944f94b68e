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
    for key in ("profile", "device", "runtime", "seed", "data", "evaluation", "versions"):
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
