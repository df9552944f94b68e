"""Run the real gate suite in a subprocess on small data, and read its results file back.

Shared by the fault-injection tests and the CUDA module: a subprocess keeps a patched moola (a
fault plugin) or CUDA state inside that run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch

from moola import artifacts
from moola.__main__ import main
from moola.data import demo
from moola.results import read_lines

REPO = Path(__file__).resolve().parents[1]
TINY = ["pretrain.hidden_size=16", "pretrain.epochs=2", "pretrain.max_unlabeled=512", "pretrain.batch_size=128",
        "finetune.epochs=8", "finetune.unfreeze_every=1", "baseline.epochs=4", "smoke.overfit_steps=60"]


def small_demo(tmp_path_factory) -> Path:
    """The demo dataset with a 1,200-window pool (labeled rows and split as in the full demo)."""
    return demo.write_demo(tmp_path_factory.mktemp("data") / "demo", n_unlabeled=1200)


def copy_data(demo_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_root, tmp_path / "data"))


def run_gates(pytester, data_root: Path, *args: str, plugin: str | None = None, overrides=TINY,
              name: str = "run", output: list | None = None) -> dict:
    """`pytest gates ARGS` on `data_root` with `--set` overrides; returns {gate: line}.

    `plugin`: source of a module loaded with -p before any gate runs (e.g. a fault that patches
    moola). Its patches live in the gate's process: the fits of gates 4-6 run in spawned workers
    (`moola.parallel`) that import moola unpatched, unless `--set runtime.fit_workers=1`. `name`: a folder of its own for artifacts and results, so two runs share nothing.
    `output`: a list the run's terminal text is appended to.
    """
    folder = pytester.path / name
    folder.mkdir(exist_ok=True)
    results = folder / "results.jsonl"
    command = [str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"),
               "--data-dir", str(data_root), "--artifacts-dir", str(folder / "artifacts"),
               "--results", str(results), "-p", "no:cacheprovider", *args]
    for override in overrides:
        command += ["--set", override]
    if plugin:
        module = f"plugin_{name}"
        pytester.makepyfile(**{module: plugin})
        command += ["-p", module]
    result = pytester.runpytest_subprocess(*command, timeout=600)
    if output is not None:
        output.append(result.stdout.str())
    return {line["gate"]: line for line in read_lines(results)}


def ensemble_round_trip(pytester, data_root: Path, out_dir: Path, device: str, members: str = "finetuned,augmented"):
    """Gate 7 alone (`--start-gate 7`, tiny profile, point policy so a tiny model's gates can pass) on
    `device`, then `python -m moola predict` on the labeled file, on the CPU.

    Returns (gate 7's line, the predictions table, the reference probabilities the session computed).
    """
    lines = run_gates(pytester, data_root, "--start-gate", "7", "--device", device, name=f"ensemble_{device}",
                      overrides=[*TINY, "thresholds.gate_policy=point", f"ensemble.members={members}"])
    line = lines["7_ensemble"]
    assert line["status"] in ("passed", "warning"), (line["status"], line["reason"])
    assert line["members_used"] and line["artifact"]["max_abs_diff_reloaded"] <= 1e-9, line["artifact"]
    path = Path(line["artifacts"]["model"])
    assert artifacts.load_checkpoint(path)[1]["gate"]["deliverable"] is True  # the plugin wrote gate 7's verdict
    session = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["reference.proba"].numpy()
    out = out_dir / "predictions.parquet"
    results = pytester.path / f"ensemble_{device}" / "results.jsonl"
    assert main(["predict", str(data_root / "processed/train_clean.parquet"), "--out", str(out),
                 "--artifacts-dir", str(path.parents[1]), "--results", str(results), "--model", "ensemble"]) == 0
    table = pd.read_parquet(out)
    assert len(table) == 98
    return line, table, session
