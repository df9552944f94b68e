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
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

import moola
from moola.training.distributed import die_with_parent

log = logging.getLogger(__name__)


def torchrun_arguments(nproc: int, job: Path) -> list[str]:
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--monitor-interval", "1", "-m", "moola.training.pretrain_main", str(job)]


def worker_environment() -> dict:
    """This environment, with this `moola` first on the ranks' import path (a checkout not installed)."""
    env = dict(os.environ)
    root = str(Path(moola.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
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
                            stderr=subprocess.STDOUT, env=worker_environment(), text=True, bufsize=1)


def run(job: dict, nproc: int, job_path: Path, log_path: Path) -> None:
    """Run the job on `nproc` ranks to the end, its output logged and kept in `log_path`; raise
    `RuntimeError` with the output's tail when it fails."""
    process = start(job, nproc, job_path)
    tail, first_error = deque(maxlen=12), []
    with open(log_path, "w") as log_file, process.stdout:
        for line in process.stdout:
            log_file.write(line)
            log_file.flush()
            line = line.rstrip()
            log.info("%s", line)
            tail.append(line)
            first_error = traceback_lines(first_error, line)
    status = process.wait()
    if status != 0:
        shown = first_error if first_error else list(tail)
        raise RuntimeError(
            f"distributed pretraining on {nproc} processes failed: torchrun exited {status}. "
            f"{'The first error a rank raised' if first_error else 'Its last lines'} (whole output in {log_path}):\n"
            + "\n".join(shown) + "\nThe resume file is kept: fix the cause and rerun to continue, or run with "
            "--nproc 1 (pretrain.devices=1) to pretrain in one process.")


RANK_PREFIX = re.compile(r"^\[(?:default)?rank ?\d+\]: ?")  # what newer torchrun puts before a rank's lines


def traceback_lines(kept: list, line: str) -> list:
    """Collect the first Python traceback in the output: from "Traceback" to its exception line."""
    text = RANK_PREFIX.sub("", line)
    if not kept:
        return [text] if "Traceback (most recent call last)" in text else []
    if kept[-1] and not kept[-1][:1].isspace() and "Traceback (most recent call last)" not in kept[-1]:
        return kept  # complete: the exception line is in
    return kept + [text]


if __name__ == "__main__":  # torchrun, dying with the process that started it
    die_with_parent()
    from torch.distributed.run import main

    main(sys.argv[1:])
