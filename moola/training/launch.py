"""Launch distributed pretraining with torchrun and wait for it (`pretrain.devices N`, `--nproc N`).

No process manager of our own: torchrun (`torch.distributed.run`'s `main`, run with this
interpreter) starts N ranks of `moola.training.pretrain_main` on this machine (`--standalone`: a
local rendezvous on a free port), restarts none, and exits non-zero when a rank fails. Run as
`python -m moola.training.launch TORCHRUN_ARGS`, this module first asks the kernel to kill
torchrun when its parent dies (Linux), then hands over to torchrun's `main`. Its output is
streamed to the log and kept in a file beside the cache entry.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import moola
from moola.training.distributed import die_with_parent

log = logging.getLogger(__name__)


def torchrun_arguments(nproc: int, job: Path) -> list[str]:
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--monitor-interval", "1", "-m", "moola.training.pretrain_main", str(job)]


def worker_environment(device_type: str) -> dict:
    """This environment, with this `moola` first on the ranks' import path (a checkout not installed),
    this process's pid for `die_with_parent`, and on the CPU gloo on the loopback interface (one
    machine; gloo otherwise resolves the hostname, which fails on some Macs' `.local` names)."""
    env = dict(os.environ)
    root = str(Path(moola.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["MOOLA_LAUNCHER_PID"] = str(os.getpid())
    if device_type == "cpu" and "GLOO_SOCKET_IFNAME" not in env:
        env["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"
    return env


def start(job: dict, nproc: int, job_path: Path, output=subprocess.PIPE) -> subprocess.Popen:
    """Write `job` to `job_path` and start torchrun on it; its output (both streams) goes to `output`.

    torchrun dies with its parent on Linux (`die_with_parent`), and its ranks with it."""
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job, indent=1))
    arguments = torchrun_arguments(nproc, job_path)
    log.info("distributed pretraining: torchrun %s", " ".join(arguments))
    # not preexec_fn (unsafe in a process with threads, as torch's): the child sets it itself, see __main__
    return subprocess.Popen([sys.executable, "-m", "moola.training.launch", *arguments], stdout=output,
                            stderr=subprocess.STDOUT, env=worker_environment(job["device"]), text=True,
                            encoding="utf-8", errors="replace", bufsize=1)


FAILED = "moola pretraining rank failed:"  # the line `pretrain_main` prints before a rank's traceback


def run(job: dict, nproc: int, job_path: Path, log_path: Path, timeout_s: float | None = None) -> None:
    """Run the job on `nproc` ranks to the end, its output logged and kept in `log_path`; raise
    `RuntimeError` with the ranks' own error lines (or the output's tail) when it fails, or when
    `timeout_s` passes (tests; a real pretraining may take hours, so none by default)."""
    process = start(job, nproc, job_path)
    tail, errors = deque(maxlen=12), []
    watchdog = threading.Timer(timeout_s, process.kill) if timeout_s else None
    if watchdog:
        watchdog.start()
    try:
        with open(log_path, "w", encoding="utf-8") as log_file, process.stdout:
            for line in process.stdout:
                log_file.write(line)
                log_file.flush()
                line = line.rstrip()
                log.info("%s", line)
                tail.append(line)
                if FAILED in line:
                    errors.append(line[line.index(FAILED) + len(FAILED):].strip())
        status = process.wait()
    finally:  # Ctrl-C, or this loop failing: torchrun (and with it its ranks) must not train on alone
        if watchdog:
            watchdog.cancel()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if status != 0:
        late = f" after the {timeout_s:.0f} s allowed" if timeout_s and status == -9 else ""
        shown = "\n".join(errors) if errors else "Its last lines:\n" + "\n".join(tail)
        raise RuntimeError(
            f"distributed pretraining on {nproc} processes failed: torchrun exited {status}{late} (whole output "
            f"in {log_path}).\n{shown}\nThe resume file is kept: fix the cause and rerun to continue, or run with "
            "--nproc 1 (pretrain.devices=1) to pretrain in one process.")


if __name__ == "__main__":  # torchrun, dying with the process that started it (its ranks with it)
    die_with_parent("MOOLA_LAUNCHER_PID")
    os.environ["MOOLA_TORCHRUN_PID"] = str(os.getpid())
    from torch.distributed.run import main

    main(sys.argv[1:])
