"""Distributed pretraining: torchrun ranks (gloo on CPU) compute what one process computes.

Only the two-rank check runs in the fast set; the others each launch torchrun and are marked
slow (`pytest unit_tests/test_pretrain_ddp.py --run-slow`, which CI runs on both stacks).

Two ranks on a small pool must end with identical weights on every rank, write one encoder,
lower the loss, match the single-process weights at the same global batch, and continue after
a kill (with two ranks again, or with one). The pool file and the option plumbing are checked
on their own.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from moola import artifacts
from moola.config import PretrainConfig, apply_overrides, quick_profile
from moola.data import pool_file
from moola.data.demo import generate
from moola.data.normalize import normalize_windows
from moola.training import launch
from moola.training.distributed import World, state_digest
from moola.training.pretrain import pretrain_encoder

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")

CPU = torch.device("cpu")
# 63 rows a global batch: the two ranks take 31 and 32 (unequal shares must still give the global gradient)
CONFIG = PretrainConfig(hidden_size=16, num_layers=2, epochs=4, batch_size=63, patience=50)


@pytest.fixture(scope="module")
def raw_pool():
    return generate(seed=17, n_unlabeled=600)["unlabeled"]["features"]


def job_for(folder: Path, raw: np.ndarray, config: PretrainConfig) -> dict:
    pool = pool_file.write_pool(folder / "pool.npy", raw, np.arange(len(raw)), normalize_windows)
    return {"pool": str(pool), "config": dataclasses.asdict(config), "seed": 17, "fingerprint": "test-key",
            "checkpoint": str(folder / "encoder.resume.pt"), "entry": str(folder / "encoder.pt"),
            "metadata": {"written_before_training": True}, "device": "cpu", "deterministic": True}


def run_ranks(folder: Path, job: dict, nproc: int = 2) -> tuple[dict, dict]:
    launch.run(job, nproc, folder / "job.json", folder / "torchrun.log", timeout_s=300)
    return artifacts.load_checkpoint(Path(job["entry"]))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a)


@pytest.mark.slow  # launches torchrun (~6 s, a tenth of the unit tests' minute); CI runs it on both stacks
def test_two_gloo_ranks_train_the_single_process_encoder(tmp_path, raw_pool):
    state, metadata = run_ranks(tmp_path, job_for(tmp_path, raw_pool, CONFIG))
    distributed = metadata["distributed"]
    assert distributed["world_size"] == 2 and distributed["backend"] == "gloo"
    assert distributed["global_batch"] == 63 and distributed["rank_batch"] == 32
    # every rank ended with the same weights
    assert len(distributed["rank_digests"]) == 2 and distributed["ranks_identical"]
    assert distributed["rank_digests"][0] == state_digest(state)
    # one encoder file (rank 0's), beside the resume file the caller removes once it has read it
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["encoder.pt", "encoder.resume.pt"]
    assert metadata["written_before_training"] and metadata["throughput"]["windows_per_s"] > 0
    history = metadata["history"]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]

    single = pretrain_encoder(normalize_windows(raw_pool), CONFIG, CPU, 17)
    # the same computation: only the order of float sums differs (measured: 3e-8)
    assert max_difference(state, single.model_state) < 1e-5
    assert [h["val_loss"] for h in history] == pytest.approx([h["val_loss"] for h in single.history], abs=1e-5)
    assert metadata["steps"] == single.steps


@pytest.mark.slow  # each launches torchrun (~5-8 s); CI runs them on both stacks
def test_three_ranks_with_an_empty_share_and_the_anti_collapse_penalty_match_one_process(tmp_path, raw_pool):
    # 540 train windows at batch 269: batches of 269, 269 and 2, so rank 0's share of the last is
    # empty; the penalty's std is a global-batch statistic on every rank
    config = dataclasses.replace(CONFIG, batch_size=269, epochs=3, anti_collapse_weight=1.0)
    state, metadata = run_ranks(tmp_path, job_for(tmp_path, raw_pool, config), nproc=3)
    assert metadata["distributed"]["world_size"] == 3 and metadata["distributed"]["ranks_identical"]
    single = pretrain_encoder(normalize_windows(raw_pool), config, CPU, 17)
    assert max_difference(state, single.model_state) < 1e-5
    assert [h["train_loss"] for h in metadata["history"]] == pytest.approx(
        [h["train_loss"] for h in single.history], abs=1e-5)


@pytest.mark.slow  # each launches torchrun (~5-8 s); CI runs them on both stacks
def test_one_torchrun_rank_is_the_in_process_path(tmp_path, raw_pool):
    state, metadata = run_ranks(tmp_path, job_for(tmp_path, raw_pool, CONFIG), nproc=1)
    assert metadata["distributed"]["world_size"] == 1 and metadata["distributed"]["ranks_identical"]
    single = pretrain_encoder(normalize_windows(raw_pool), CONFIG, CPU, 17)
    assert max_difference(state, single.model_state) == 0.0  # the same code path: no all-reduce at all


def _resume_epoch(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 -- not there yet, or being replaced
        return 0


def _ranks_alive(job_path: Path) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(job_path).encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


@pytest.mark.slow  # ~16 s; CI runs it on both stacks
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ranks die with torchrun through PR_SET_PDEATHSIG (Linux)")
def test_a_killed_run_resumes_on_two_ranks_or_one(tmp_path, raw_pool):
    config = dataclasses.replace(CONFIG, epochs=12)
    job = job_for(tmp_path, raw_pool, config)
    resume, entry, job_path = Path(job["checkpoint"]), Path(job["entry"]), tmp_path / "job.json"
    with open(tmp_path / "killed.log", "w") as output:
        process = launch.start(job, 2, job_path, output)
    deadline = time.monotonic() + 120
    while _resume_epoch(resume) < 2:
        assert process.poll() is None, "torchrun ended before the kill"
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # the agent: its ranks get SIGKILL from the kernel
    process.wait()
    deadline = time.monotonic() + 30
    while _ranks_alive(job_path):
        assert time.monotonic() < deadline, "the ranks outlived the killed torchrun by 30 s"
        time.sleep(0.1)
    killed_at = _resume_epoch(resume)
    assert 2 <= killed_at < config.epochs and not entry.exists()
    shutil.copy(resume, tmp_path / "copy.resume.pt")

    uninterrupted = pretrain_encoder(normalize_windows(raw_pool), config, CPU, 17)
    state, metadata = run_ranks(tmp_path, job)  # two ranks again
    assert metadata["resumed_from_epoch"] == killed_at
    assert [h["epoch"] for h in metadata["history"]] == list(range(1, config.epochs + 1))
    assert max_difference(state, uninterrupted.model_state) < 1e-4

    one = pretrain_encoder(normalize_windows(raw_pool), config, CPU, 17, checkpoint=tmp_path / "copy.resume.pt",
                           fingerprint="test-key")  # the killed two-rank run, continued in one process
    assert one.resumed_from_epoch == killed_at
    assert max_difference(one.model_state, uninterrupted.model_state) < 1e-4


@pytest.mark.slow  # each launches torchrun (~5-8 s); CI runs them on both stacks
def test_a_failing_rank_raises_with_the_log_tail(tmp_path, raw_pool):
    job = job_for(tmp_path, raw_pool, CONFIG)
    job["pool"] = str(tmp_path / "missing.npy")
    with pytest.raises(RuntimeError, match=r"(?s)torchrun exited \d+ .*\nrank [01]: FileNotFoundError: [^\n]*missing\.npy.*The resume file is kept.*--nproc 1"):
        launch.run(job, 2, tmp_path / "job.json", tmp_path / "torchrun.log", timeout_s=300)


def test_pool_file_normalises_in_chunks_and_is_reused(tmp_path, raw_pool, monkeypatch):
    monkeypatch.setattr(pool_file, "CHUNK", 7)
    rows = np.array([5, 3, 100, 7, 8, 9, 10, 11, 12, 500, 2])
    path = pool_file.write_pool(tmp_path / "pool.npy", raw_pool, rows, normalize_windows)
    np.testing.assert_array_equal(pool_file.open_pool(path), normalize_windows(raw_pool[rows]))
    assert not list(tmp_path.glob(".*tmp*")), "the temp file was left behind"
    stamp = path.stat().st_mtime_ns
    pool_file.write_pool(path, raw_pool, rows, normalize_windows)  # complete: kept as it is
    assert path.stat().st_mtime_ns == stamp
    pool_file.write_pool(path, raw_pool, rows[:4], normalize_windows)  # another shape: rewritten
    assert pool_file.open_pool(path).shape[0] == 4


def test_world_shares_cover_a_batch_once():
    for size in (1, 2, 3, 8):
        for n in (2, 7, 63, 512):
            shares = [World(rank, size).share(n) for rank in range(size)]
            assert shares[0][0] == 0 and shares[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
            assert max(e - b for b, e in shares) - min(e - b for b, e in shares) <= 1


@pytest.mark.slow  # each launches torchrun (~5-8 s); CI runs them on both stacks
def test_devices_is_checked_and_gate_3_trains_on_ranks_then_reads_the_same_entry_in_one_process(tmp_path):
    from moola.stages.encoder import cache_entry, check_devices, encoder_record, obtain_encoder

    from .conftest import DataFolder
    from .test_encoder_cache import context

    with pytest.raises(ValueError, match=r"pretrain.devices=0.*>= 1"):
        apply_overrides(quick_profile(), ["pretrain.devices=0"])
    with pytest.raises(ValueError, match="not on MPS"):
        check_devices(torch.device("mps"), 2)
    with pytest.raises(ValueError, match=r"CUDA device\(s\)"):
        check_devices(torch.device("cuda"), torch.cuda.device_count() + 1)
    from moola.stages.context import resolve_settings
    from moola.stages.env import verify_environment
    root = DataFolder(tmp_path / "data", seed=1).write()
    too_many = resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "a"), results=None,
                                device="cuda" if torch.cuda.is_available() else "cpu", profile="quick",
                                overrides=[f"pretrain.devices={torch.cuda.device_count() + 1}"], seed=17,
                                fresh=False, demo=False)
    problems = verify_environment(too_many)["problems"]
    if torch.cuda.is_available():  # gate 0 refuses it before anything trains
        assert any("pretrain.devices" in problem for problem in problems), problems
    else:  # CPU ranks: any number
        assert not any("pretrain.devices" in problem for problem in problems), problems

    artifacts_dir = tmp_path / "artifacts"
    ranks = context(root, artifacts_dir, "pretrain.devices=2", "pretrain.epochs=2")
    trained = obtain_encoder(ranks)
    assert trained.source == "trained" and trained.metadata["distributed"]["world_size"] == 2
    metrics = encoder_record(ranks, trained)["metrics"]
    assert (metrics["devices"], metrics["world_size"], metrics["global_batch"]) == (2, 2, 16)
    assert metrics["windows_per_s"] > 0
    cache = artifacts_dir / "pretrained/cache"
    # one encoder; the pool file, the job and the resume file gone once it is saved (the log stays)
    assert sorted(p.name for p in cache.iterdir()) == [f"encoder_{trained.fingerprint}.pt",
                                                       f"encoder_{trained.fingerprint}.torchrun.log"]
    one = obtain_encoder(context(root, artifacts_dir, "pretrain.devices=1", "pretrain.epochs=2"))
    assert one.source == "cache" and one.fingerprint == trained.fingerprint  # the device count is no hyperparameter
    assert cache_entry(ranks, trained.fingerprint).is_file()


def test_nproc_option_sets_pretrain_devices():
    import importlib.util
    from types import SimpleNamespace

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("moola_root_conftest", root / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    given = SimpleNamespace(gate_policy=None, cv=None, folds=None, seeds=None, nproc=2)
    assert module._option_overrides(given) == ["pretrain.devices=2"]
    assert module._option_overrides(SimpleNamespace(**{**vars(given), "nproc": None})) == []


@pytest.mark.slow
def test_gate_3_with_nproc_2_records_the_ranks_and_matches_one_process(pytester, tmp_path_factory):
    """`pytest gates -k pretrain --nproc 2` as a user runs it: torchrun trains, gate 3 reads the
    cache entry, its line records the ranks; one process, fresh, gets the same encoder."""
    from .gate_runs import run_gates, small_demo

    data = small_demo(tmp_path_factory)
    two = run_gates(pytester, data, "-k", "pretrain", "--nproc", "2", name="two")["3_pretrain_bilstm"]
    metrics, distributed = two["metrics"], two["distributed"]  # `extra` fields sit at the top of a line
    assert (metrics["devices"], metrics["world_size"], metrics["global_batch"]) == (2, 2, 128), metrics
    assert metrics["windows_per_s"] > 0 and distributed["launcher"] == "torchrun" and distributed["ranks_identical"]
    assert two["config"]["devices"] == 2 and two["encoder_source"] == "trained"
    cache = pytester.path / "two" / "artifacts" / "pretrained" / "cache"
    assert [p.name for p in cache.glob("*.pt")] == [f"encoder_{two['encoder_fingerprint']}.pt"]
    assert not list(cache.glob("pool_*.npy"))

    again = run_gates(pytester, data, "-k", "pretrain", name="two")["3_pretrain_bilstm"]  # one process, same folder
    assert again["encoder_source"] == "cache" and again["metrics"]["devices"] == 2  # what trained it

    one = run_gates(pytester, data, "-k", "pretrain", name="one")["3_pretrain_bilstm"]
    assert one["metrics"]["devices"] == 1 and one["encoder_fingerprint"] == two["encoder_fingerprint"]
    assert one["metrics"]["best_val_loss"] == pytest.approx(metrics["best_val_loss"], abs=1e-5)
    assert one["metrics"]["probe_balanced_acc"] == pytest.approx(metrics["probe_balanced_acc"], abs=0.02)
