"""A stage's fits together (`moola.parallel.pool`): the same numbers as one after another, the
refit planned beside the scored fits, and a broken pool that finishes the stage in this process."""

import logging
import multiprocessing
import os
import time
import warnings
from functools import partial

import numpy as np
import pytest
import torch

from moola.parallel.pool import (
    AUTO_CUDA,
    AUTO_MAX_CPU,
    FitPool,
    Job,
    cpu_cores,
    one_thread,
    starting_worker,
    worker_count,
)
from moola.stages import augmented, classifiers
from moola.stages.protocol import Seeded, cross_fit_stage
from moola.stages.refit import refit_steps

from .gate_runs import REPO
from .test_gate5_and_refit import context

SHORT = ["finetune.epochs=5", "baseline.epochs=2"]  # the in-process tests: every phase, fewer steps


def test_auto_workers_are_the_cpu_cores_four_on_cuda_with_a_core_to_spare_and_one_on_mps():
    assert worker_count(3, "cpu") == 3 and worker_count(2, "cuda") == 2
    assert worker_count(0, "cpu") == max(1, min(cpu_cores(), AUTO_MAX_CPU))
    assert worker_count(0, "cuda") == max(1, min(AUTO_CUDA, cpu_cores() - 1)) and worker_count(0, "mps") == 1
    with pytest.raises(ValueError, match="runtime.fit_workers"):
        worker_count(-1, "cpu")


def test_a_gate_run_refuses_to_start_inside_a_worker_importing_an_unguarded_script(pytester, monkeypatch):
    assert not starting_worker()
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    assert starting_worker()
    result = pytester.runpytest_inprocess(str(REPO / "gates"), "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"),
                                          "--co", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert 'if __name__ == "__main__"' in "\n".join(result.errlines)


def test_code_changed_during_a_run_keeps_the_fits_in_the_runs_process(tmp_path, monkeypatch):
    import moola.parallel.pool as pool_module

    assert pool_module.code_changed() is None
    monkeypatch.setattr(pool_module, "code_changed", lambda: "the code on disk changed since the run began")
    ctx = context(tmp_path)
    pool = FitPool(ctx, workers=2)
    results = pool.run([Job((17, fold.index), die_in_a_worker, fold, 17) for fold in ctx.folds])
    assert [result[0] for result in results.values()] == [fold.index for fold in ctx.folds]  # none in a worker
    assert pool._executor is None and "the code on disk changed" in pool.ran(len(results), 0)["broken"]


def test_one_thread_pins_torch_and_gives_the_count_back():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# slow (4 s): trains gates 4-6's stages in-process; CI runs it with the slow set
@pytest.mark.slow
def test_the_refit_is_planned_at_the_steps_the_scored_fits_take(tmp_path, caplog):
    # Planned right, the refit trains beside the scored fits and is never trained twice.
    ctx = context(tmp_path, *SHORT, "finetune.batch_size=7", "augment.quality_threshold=0.0")  # pseudo-samples survive
    finetuned = cross_fit_stage(ctx, "enhanced_simple_lstm", Seeded(partial(classifiers.run_finetune, encoder_state=None)),
                                plan=classifiers.finetune_steps)
    steps = refit_steps(finetuned.fits)
    assert finetuned.final.extra["steps_per_epoch"] == steps
    augmented_run = cross_fit_stage(ctx, "enhanced_simple_lstm_augmented",
                                    Seeded(partial(augmented.run_augmented, encoder_state=None)),
                                    prepare=partial(augmented.pseudo_samples, finetuned=finetuned),
                                    plan=classifiers.finetune_steps)
    assert augmented_run.final.extra["steps_per_epoch"] == refit_steps(augmented_run.fits) > steps
    assert augmented_run.final.extra["n_fit_rows"] == 40 + len(augmented_run.final.extra["samples"].y)
    baseline = cross_fit_stage(ctx, "simple_lstm", Seeded(classifiers.run_baseline), plan=classifiers.baseline_steps)
    assert baseline.final.extra["steps_per_epoch"] == refit_steps(baseline.fits)
    assert "refit again" not in caplog.text
    for stage in (finetuned, augmented_run, baseline):
        assert stage.ran["fits"] == len(stage.fits) + 1 and stage.ran["where"] == "this process"
        assert stage.train_time_s == stage.ran["wall_s"] > 0 and stage.ran["fit_seconds"] > 0


def test_a_wrong_plan_is_caught_and_the_refit_trained_again_at_the_fits_steps(tmp_path, caplog):
    ctx = context(tmp_path, *SHORT)
    stage = cross_fit_stage(ctx, "enhanced_simple_lstm", Seeded(partial(classifiers.run_finetune, encoder_state=None)),
                            plan=lambda view: 1)
    assert "refit again" in caplog.text
    assert stage.final.extra["steps_per_epoch"] == refit_steps(stage.fits) > 1


@pytest.mark.slow
def test_fits_in_two_workers_are_bit_identical_to_fits_one_after_another(tmp_path):
    ctx = context(tmp_path, "augment.quality_threshold=0.0")  # gate 5 with pseudo-samples
    fit = Seeded(partial(classifiers.run_finetune, encoder_state=None))
    augment = Seeded(partial(augmented.run_augmented, encoder_state=None))
    alone = cross_fit_stage(ctx, "enhanced_simple_lstm", fit, plan=classifiers.finetune_steps)
    alone_5 = cross_fit_stage(ctx, "augmented", augment, prepare=partial(augmented.pseudo_samples, finetuned=alone),
                              plan=classifiers.finetune_steps)
    pool = FitPool(ctx, workers=2)
    try:
        together = cross_fit_stage(ctx, "enhanced_simple_lstm", fit, plan=classifiers.finetune_steps, pool=pool)
        together_5 = cross_fit_stage(ctx, "augmented", augment,  # the same workers, the next stage
                                     prepare=partial(augmented.pseudo_samples, finetuned=together),
                                     plan=classifiers.finetune_steps, pool=pool)
    finally:
        pool.close()
    for one, two in ((alone, together), (alone_5, together_5)):
        assert two.ran["where"] == "worker processes" and two.ran["workers"] == 2
        assert np.array_equal(two.evaluation.proba, one.evaluation.proba)
        for key, trained in one.fits.items():
            _same_weights(trained.model, two.fits[key].model)
        _same_weights(one.final.model, two.final.model)
        assert two.final.extra["refit_check"] == one.final.extra["refit_check"]
    assert len(together_5.final.extra["samples"].y) > 0


def _same_weights(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def _gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether process `pid` ended within `seconds` (reaped by whichever thread joins it first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def die_in_a_worker(view):
    if multiprocessing.parent_process() is not None:
        os._exit(3)  # a worker killed (e.g. out of memory)
    return view.fold.index


def warn_and_log(view):
    logging.getLogger("moola.training.classifier").debug("fold %d epoch 1/1", view.fold.index)
    warnings.warn(f"fold {view.fold.index}: a library's warning", UserWarning)
    return view.fold.index


def fail_loudly(view):
    raise ValueError(f"fold {view.fold.index}: batch_size 1 with BatchNorm")


@pytest.mark.slow
def test_a_broken_pool_finishes_in_this_process_and_a_workers_warnings_logs_and_errors_reach_the_caller(tmp_path,
                                                                                                       caplog):
    ctx = context(tmp_path)
    jobs = [Job((17, fold.index), die_in_a_worker, fold, 17) for fold in ctx.folds]
    pool = FitPool(ctx, workers=2)
    try:
        results = pool.run(jobs)
        assert [results[job.key][0] for job in jobs] == [fold.index for fold in ctx.folds]
        assert "broke" in pool.ran(len(jobs), 0)["broken"] and pool.ran(len(jobs), 0)["where"] == "this process"
    finally:
        pool.close()
    pool = FitPool(ctx, workers=2)
    try:
        caplog.set_level(logging.DEBUG)
        with pytest.warns(UserWarning, match="a library's warning") as said:
            pool.run([Job((17, fold.index), warn_and_log, fold, 17) for fold in ctx.folds])
        assert len(said) == len(ctx.folds)  # every worker's warning, raised here for the gate's line
        assert all(f"fold {fold.index} epoch 1/1" in caplog.text for fold in ctx.folds)  # and its log lines
        workers = list(pool._executor._processes.values())
        with pytest.raises(ValueError, match="batch_size 1 with BatchNorm"):
            pool.run([Job((17, fold.index), fail_loudly, fold, 17) for fold in ctx.folds])
        # a failed fit stops the stage's other fits (a refit would save a file): its workers are gone
        assert pool._executor is None and all(_gone(worker.pid) for worker in workers)
        assert pool.run([Job((17, 0), die_in_a_worker, ctx.folds[0], 17)])[(17, 0)][0] == 0  # the next stage runs
    finally:
        pool.close()
