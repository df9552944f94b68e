"""The prepared GPU check: `python -m moola.gpu_check [--out gpu_check.json]`, from a repo checkout.

For whoever has a CUDA device (RunPod, or a lent accelerator for a few minutes), one command that
runs, in order, each in its own process:

1. the CUDA test module: `pytest unit_tests/test_cuda.py --run-slow` (re-flattened copies,
   determinism, every gate end to end on CUDA twice with a tiny profile and every technique on);
2. the `full` profile on the demo data from scratch: `pytest gates -x --demo --profile full
   --device cuda`, each gate's status, val_f1 and duration read from its results lines;
3. gate 4 alone from the cache, twice (`--start-gate 4 --end-gate 4`; step 2's -x may stop
   before it): the two runs' gate-4 metrics must be equal;
4. `python -m moola.bench --device cuda` (fine-tune and pretraining overheads, fp16 vs fp32);

and writes one JSON summary. Nothing here is needed on a CPU box; CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from moola.results import read_lines

REPO = Path(__file__).resolve().parents[1]


def _run(command: list, timeout_s: float) -> dict:
    """Run `command` in the repo root; its exit code, wall time and the tail of its output.

    Its own process group: on a timeout the whole group is killed, so a gate run that the test
    module started does not go on holding the GPU through the next step.
    """
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        rc = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        rc = "timeout"
    finally:  # Ctrl-C or a kill of this check: its own session would not pass the signal on
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return {"command": " ".join(command[2:] if command[:2] == [sys.executable, "-m"] else command),
            "rc": rc, "duration_s": round(time.monotonic() - started, 1), "output_tail": (output or "")[-3000:]}


def _gates(results: Path) -> dict:
    return {line["gate"]: {"status": line["status"], "val_f1": line["metrics"].get("val_f1"),
                           "duration_s": line["duration_s"], "reason": line["reason"],
                           "warnings": len(line.get("warnings") or [])}
            for line in read_lines(results)}


def _last_run(results: Path) -> str | None:
    lines = read_lines(results)
    return lines[-1]["run_id"] if lines else None


def _metrics(results: Path, gate: str, run_id: str | None) -> dict:
    lines = [line for line in read_lines(results) if line["gate"] == gate and line["run_id"] == run_id]
    return {k: v for k, v in lines[-1]["metrics"].items() if not k.endswith("_s")} if lines else {}


def _crashed(results: Path, run_id: str | None = None) -> list:
    lines = read_lines(results)
    run_id = run_id or (lines[-1]["run_id"] if lines else None)
    return [line["gate"] for line in lines if line["run_id"] == run_id and line["status"] == "error"]


def gpu_check(out: Path, timeout_s: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="moola_gpu_check_"))
    python = [sys.executable, "-m"]
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version(), "work_dir": str(work)}
    tests = _run([*python, "pytest", "unit_tests/test_cuda.py", "--run-slow", "-p", "no:cacheprovider",
                  "--json-report", f"--json-report-file={work / 'cuda_tests.json'}"], timeout_s)
    if (work / "cuda_tests.json").is_file():
        tests["outcomes"] = json.loads((work / "cuda_tests.json").read_text()).get("summary")
    summary["cuda_tests"] = tests
    gates = [*python, "pytest", "gates", "--demo", "--profile", "full", "--device", "cuda", "-p", "no:cacheprovider",
             "--artifacts-dir", str(work / "artifacts"), "--results", str(work / "results.jsonl")]
    full = _run([*gates, "-x"], timeout_s)
    full["gates"] = _gates(work / "results.jsonl")
    full["crashed"] = _crashed(work / "results.jsonl")
    summary["full_demo"] = full
    # Gate 4 twice from the cache (-x above may stop before it): the two runs' metrics must match.
    gate4 = [*gates, "--start-gate", "4", "--end-gate", "4"]
    first = _run(gate4, timeout_s)
    first_run = _last_run(work / "results.jsonl")
    first_gate4 = _metrics(work / "results.jsonl", "4_finetune_enhanced", first_run)
    rerun = _run(gate4, timeout_s)
    rerun_id = _last_run(work / "results.jsonl")
    rerun["gate4_metrics_equal_first_run"] = (bool(first_gate4) and rerun_id != first_run and first_gate4
                                              == _metrics(work / "results.jsonl", "4_finetune_enhanced", rerun_id))
    rerun["crashed"] = _crashed(work / "results.jsonl") + _crashed(work / "results.jsonl", first_run)
    rerun["first_rc"] = first["rc"]
    summary["full_demo_rerun_from_cache"] = rerun
    bench = _run([*python, "moola.bench", "--device", "cuda", "--json", str(work / "bench.json")], timeout_s)
    if (work / "bench.json").is_file():
        bench["numbers"] = json.loads((work / "bench.json").read_text())
    summary["bench"] = bench
    summary["ok"] = (tests["rc"] == 0 and full["rc"] in (0, 1) and first["rc"] in (0, 1) and rerun["rc"] in (0, 1)
                     and bench["rc"] == 0
                     and not full["crashed"] and not rerun["crashed"] and rerun["gate4_metrics_equal_first_run"])
    out.write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moola.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="where to write the JSON summary")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds allowed for each step")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"error: CUDA is not available to torch {torch.__version__}; this check is for a GPU machine "
              "(nvidia-smi should list one)", file=sys.stderr)
        return 2
    if not (REPO / "gates").is_dir() or not (REPO / "unit_tests").is_dir():
        print(f"error: run from a checkout of the repository (gates/ and unit_tests/ next to {REPO / 'moola'}), "
              "installed with pip install -e .", file=sys.stderr)
        return 2
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    summary = gpu_check(Path(args.out), args.timeout)
    for step in ("cuda_tests", "full_demo", "full_demo_rerun_from_cache", "bench"):
        print(f"{step}: rc {summary[step]['rc']} in {summary[step]['duration_s']} s")
    for gate, line in summary["full_demo"]["gates"].items():
        print(f"  {gate:22} {line['status']:8} val_f1 {line['val_f1']}  {line['duration_s']} s")
    print(f"summary -> {args.out} ({'ok' if summary['ok'] else 'PROBLEMS: read the summary'})")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
