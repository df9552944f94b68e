"""A stage's fits (folds x seeds, and the refit) several at a time, in worker processes.

The fits of a stage are independent: each is seeded from scratch and reads only its view of the
run. At batch 8 one fit cannot keep a machine busy (on a GPU it waits for Python to launch tiny
kernels; on the CPU a second intra-op thread adds little to small matrix products), so N fits run
at once, one per process. Processes, not threads: Python holds one lock per process, and a GPU
step at this size is mostly that Python.

**Every fit runs on one intra-op CPU thread, wherever it runs.** On the CPU a fit's numbers depend
on the thread count (a matrix product sums in another order on 2 threads than on 1: weights 0.02
apart after 6 epochs, measured), so a fit pinned to one thread gives the same bits in this
process or in a worker, one at a time or N, on 2 cores or 16. `workers` is a resource, not part
of the recipe (`moola.recipe.RESOURCES`).

Workers are spawned (CUDA cannot be used in a forked child) once per session; each receives the
run's context once, then jobs: (fit, fold, seed, refit steps, prepared arguments). Results come
back pickled, the model's weights with them (each weight its own storage first, so a flat LSTM
buffer is not written once per weight; re-flattened here for cuDNN: `averaging.reflatten`).
A worker's warnings and log lines (every epoch's at DEBUG) are replayed here as each fit ends, so
the gate's line records them as it would a fit of its own process. When the pool breaks (a worker
killed, e.g. out of memory), or the code on disk changed since the run began (workers would import
the new code), the stage's remaining fits run in this process and `ran()` records why. A failed fit
or Ctrl-C ends the workers at once: no other fit of the stage goes on to save a file.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from moola.recipe import code_version
from moola.seeding import deterministic_cuda
from moola.training.averaging import reflatten

log = logging.getLogger(__name__)
AUTO_MAX_CPU = 8  # auto: at most this many CPU workers (each holds its own copy of torch and the data)
AUTO_CUDA = 4  # auto on CUDA: fits sharing one GPU (each process launches its own kernels)


@dataclass(frozen=True)
class Job:
    """One fit: `fit(view, *args)` on `context.for_fit(fold, seed)`, with the refit's steps per epoch."""

    key: tuple  # (seed, fold index)
    fit: Callable
    fold: object
    seed: int
    steps_per_epoch: int | None = None
    args: tuple = ()

    def view(self, context):
        view = context.for_fit(self.fold, self.seed)
        return replace(view, steps_per_epoch=self.steps_per_epoch) if self.steps_per_epoch is not None else view


@contextlib.contextmanager
def one_thread():
    """Torch on one intra-op thread inside the block (a fit's numbers depend on the count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(setting: int, device_type: str) -> int:
    """Processes that run fits: `setting` when above 0; auto (0): one per CPU core (at most
    `AUTO_MAX_CPU`) on the CPU, `AUTO_CUDA` on CUDA with a core left for the gate's process,
    1 elsewhere (MPS)."""
    if setting < 0:
        raise ValueError(f"runtime.fit_workers: expected 0 (auto) or a count of processes, found {setting}")
    if setting > 0:
        return setting
    if device_type == "cpu":
        return max(1, min(cpu_cores(), AUTO_MAX_CPU))
    return max(1, min(AUTO_CUDA, cpu_cores() - 1)) if device_type == "cuda" else 1


def starting_worker() -> bool:
    """Whether this process is a spawned worker still importing its parent's main script: a script
    that runs `pytest.main()` without an `if __name__ == "__main__":` guard would run it again here."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def code_changed() -> str | None:
    """What changed, when the code on disk is not the code this run started with (an edit or a
    `git pull` during a run): workers started now would import the new code, while the run's lines
    record the old one (`moola.recipe`)."""
    started, now = code_version(), code_version.__wrapped__()
    return None if started == now else f"the code on disk changed since the run began (code version {started} -> {now})"


def run_job(context, job: Job):
    """One fit in this process, on one thread: (Trained, seconds)."""
    started = time.monotonic()
    with one_thread():
        trained = job.fit(job.view(context), *job.args)
    return trained, time.monotonic() - started


# -- worker side -------------------------------------------------------------------------------------
_CONTEXT = None
_KEEP = contextlib.ExitStack()  # the worker's CUDA settings, held for its lifetime


class _Kept(logging.Handler):
    """A worker's log records, kept to travel back with the fit's result."""

    def __init__(self):
        super().__init__()
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None  # picklable
        self.records.append(record)


_LOG = _Kept()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:  # a parent killed (out of memory, kill -9) leaves no worker behind
        time.sleep(1.0)
    os._exit(1)


def _start_worker(context_bytes: bytes, deterministic: bool, log_level: int) -> None:
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gate process's: it stops the workers
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    logging.getLogger().addHandler(_LOG)
    logging.getLogger().setLevel(log_level)
    _CONTEXT = pickle.loads(context_bytes)
    _KEEP.enter_context(deterministic_cuda(_CONTEXT.device, deterministic))


def _work(job_bytes: bytes) -> bytes:
    """(Trained, seconds, the fit's warnings as (message, category, file, line), its log records)."""
    _LOG.records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the gate's own process decides what to show and record
        trained, seconds = run_job(_CONTEXT, pickle.loads(job_bytes))
    said = list(dict.fromkeys((str(w.message), w.category, w.filename, w.lineno) for w in caught))
    model = getattr(trained, "model", None)
    if isinstance(model, nn.Module):  # pickle writes a view's whole storage: a flat LSTM buffer once per weight
        for parameter in model.parameters():
            parameter.data = parameter.data.clone()
    return pickle.dumps((trained, seconds, said, _LOG.records))


# -- parent side -------------------------------------------------------------------------------------
@dataclass
class FitPool:
    """Worker processes for one session's fits, started at the first stage that has several."""

    context: object  # the session's RunContext (no fold): what every job's view is cut from
    workers: int
    deterministic: bool = True
    broken: str | None = None  # why the pool stopped, if it did: later fits run in this process
    _executor: ProcessPoolExecutor | None = field(default=None, repr=False)
    received: int = 0  # fits that ran in workers, this session
    _said: set = field(default_factory=set, repr=False)  # warnings replayed: each once a session, as in one process

    def run(self, jobs: list, done: Callable[[Job, object], None] | None = None) -> dict:
        """key -> (Trained, seconds) for every job; `done(job, trained)` as each one finishes."""
        results: dict = {}
        if self.workers > 1 and len(jobs) > 1 and self.broken is None:
            try:
                self._run_in_workers(jobs, results, done)
            except BrokenProcessPool as exc:
                self.broken = f"the worker pool broke ({exc}); the remaining fits ran in this process"
                log.warning("%s", self.broken)
                self.close()
        for job in jobs:  # one job, one worker, or what a broken pool left
            if job.key not in results:
                results[job.key] = run_job(self.context, job)
                if done is not None:
                    done(job, results[job.key][0])
        return results

    def _run_in_workers(self, jobs: list, results: dict, done) -> None:
        if self._executor is None:
            changed = code_changed()
            if changed:  # the fits run here, on the code the run began with
                raise BrokenProcessPool(changed)
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(pickle.dumps(self.context), self.deterministic, logging.getLogger().getEffectiveLevel()))
        futures = {self._executor.submit(_work, pickle.dumps(job)): job for job in jobs}
        try:
            for future in as_completed(futures):
                self._receive(futures[future], future.result(), results, done)
        except BrokenProcessPool:
            raise
        except BaseException:  # a fit failed, or Ctrl-C: no other fit of the stage (its refit saves a file) goes on
            self._stop()
            raise

    def _receive(self, job: Job, data: bytes, results: dict, done) -> None:
        trained, seconds, said, records = pickle.loads(data)  # from this run's own worker, over its pipe
        for record in records:  # the worker's log lines, and its warnings, here: the gate's line records them
            logging.getLogger(record.name).handle(record)
        for warning in said:
            if warning not in self._said:
                self._said.add(warning)
                warnings.warn_explicit(*warning)
        model = getattr(trained, "model", None)
        if isinstance(model, nn.Module):  # unpickled LSTM weights are scattered: one cuDNN buffer again
            reflatten(model)
        results[job.key] = trained, seconds
        self.received += 1
        if done is not None:
            done(job, trained)

    def ran(self, jobs: int, in_workers: int) -> dict:
        """How a stage's `jobs` fits ran, `in_workers` of them in worker processes, for its gate line."""
        where = ("this process" if in_workers == 0 else "worker processes" if in_workers == jobs else
                 f"{in_workers} in worker processes, the rest in this process")
        record = {"fits": jobs, "workers": min(self.workers, jobs) if in_workers else 1, "threads_per_fit": 1,
                  "where": where}
        if self.broken is not None:
            record["broken"] = self.broken
        return record

    def _stop(self) -> None:
        """End the workers now, their running fits with them (the next stage starts new ones)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
