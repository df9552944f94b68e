"""Every run's model files, kept: a later run overwrites `models/*.pt`, and a choice across runs
(`moola select --all-runs`, a sweep) must still find the file each run scored.

At the end of a gate session the files that session saved (their metadata names its run) are
copied to `ARTIFACTS/runs/RUN_ID/models/…`; the cross-run choice is recorded in
`ARTIFACTS/runs/selected.json`, which `predict` reads by default while no later run on the same
rows has been recorded. A full run keeps about 13 MB; `rm -r ARTIFACTS/runs/RUN_ID` drops one.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from moola.artifacts import copy_atomic, load_checkpoint

RUNS = Path("runs")
SELECTED = RUNS / "selected.json"


def archived_path(artifacts_dir: Path, run_id: str, relative: Path) -> Path:
    return Path(artifacts_dir) / RUNS / run_id / relative


def archive_run(artifacts_dir: Path, run_id: str, relatives) -> list:
    """Copy each `artifacts_dir / relative` that run `run_id` saved into its run folder; returns the copies."""
    copies = []
    for relative in relatives:
        source = Path(artifacts_dir) / relative
        if not source.is_file():
            continue
        try:
            _, metadata = load_checkpoint(source)
        except Exception:  # noqa: BLE001, S112 -- an unreadable file is predict's to report, not the archive's
            continue
        if (metadata.get("gate") or {}).get("run_id") != run_id:
            continue
        copies.append(copy_atomic(source, archived_path(artifacts_dir, run_id, Path(relative))))
    return copies


def file_of(artifacts_dir: Path, run_id: str, relative: Path) -> Path | None:
    """The file run `run_id` saved at `relative`: its copy in the run folder (a later run cannot
    replace it), else the live one while no later run replaced it; None when neither holds it."""
    live = Path(artifacts_dir) / relative
    for path in (archived_path(artifacts_dir, run_id, relative), live):
        if path.is_file():
            try:
                _, metadata = load_checkpoint(path)
            except Exception:  # noqa: BLE001, S112 -- try the other copy
                continue
            if (metadata.get("gate") or {}).get("run_id") == run_id:
                return path
    return None


def record_selection(artifacts_dir: Path, record: dict) -> Path:
    path = Path(artifacts_dir) / SELECTED
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "written": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return path


def read_selection(artifacts_dir: Path) -> dict | None:
    path = Path(artifacts_dir) / SELECTED
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
