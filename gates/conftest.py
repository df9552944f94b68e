"""Session fixtures: each trains (or loads) one thing once per run and hands it to the gates.

Later gates read earlier results from these fixtures, never from the results file. A narrowed
run (`-k finetune`) builds just the fixtures its gate needs: the encoder comes from the cache.
Every classifier fixture is a `CrossFitted`: one fit per fold and seed of the run's protocol
(and, for the saved models, a refit on every labeled row).
"""

from __future__ import annotations

from functools import partial

import pytest

from moola.data.errors import DataContractError
from moola.parallel.pool import FitPool, one_thread, worker_count
from moola.seeding import deterministic_cuda, seed_everything
from moola.stages import augmented, classifiers, control, encoder
from moola.stages.context import build_context
from moola.stages.protocol import Seeded, cross_fit_stage


@pytest.fixture(scope="session")
def settings(request):
    return request.config.pluginmanager.get_plugin("moola-results").settings


@pytest.fixture(scope="session")
def data_check(request):
    """(dataset or None, every data problem), read once per session by the results plugin."""
    return request.config.pluginmanager.get_plugin("moola-results").data_check()


@pytest.fixture(scope="session")
def run(request, settings):
    """Device, data (validated, normalised) and profile, with CUDA determinism set for the session
    (`runtime.deterministic`); registers the run-wide line fields."""
    plugin = request.config.pluginmanager.get_plugin("moola-results")
    dataset, problems = plugin.data_check()
    if dataset is None:  # a run that skipped gate 0 (--start-gate, -k): the same problems, not a second read
        raise DataContractError(problems)
    ctx = build_context(settings, dataset, judged=plugin.judged_gates())
    with deterministic_cuda(ctx.device, ctx.profile.runtime.deterministic) as runtime:
        plugin.context = {**ctx.line_context(), "runtime": runtime}
        yield ctx


@pytest.fixture(scope="session")
def fit_pool(run):
    """Worker processes for the fits of every stage (`runtime.fit_workers`), closed with the session."""
    pool = FitPool(run, worker_count(run.profile.runtime.fit_workers, run.device.type),
                   run.profile.runtime.deterministic)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def pretrained(request, run):
    """The encoder (cache or pretrained now) with gate 3's numbers computed at once: when `-x` stops
    before gate 3, its line still records what pretraining did (the results plugin writes it)."""
    seed_everything(run.seed)
    outcome = encoder.obtain_encoder(run)
    try:
        outcome.record = encoder.encoder_record(run, outcome)
    except Exception as exc:  # noqa: BLE001 -- gate 3 computes it again in its own test and fails there, not every gate
        outcome.record, outcome.record_error = {}, f"{type(exc).__name__}: {exc}"
    request.config.pluginmanager.get_plugin("moola-results").encoder_obtained(outcome)
    return outcome


@pytest.fixture(scope="session")
def smoke(run, pretrained):
    # here, one fit after another: 3 head-only epochs a fit take less than starting the workers
    return cross_fit_stage(run, "enhanced_simple_lstm", Seeded(partial(classifiers.run_smoke, encoder_state=pretrained.state)),
                           refit=False)


@pytest.fixture(scope="session")
def overfit(run, pretrained):
    view = run.for_fit(run.folds[0], run.seed)
    seed_everything(view.seed)
    with one_thread():  # as every fit: the same numbers on any machine
        return classifiers.overfit_check(view, pretrained.state)


@pytest.fixture(scope="session")
def minirocket(run):
    # refit on every labeled row too: gate 2 saves it (moola select may recommend the control)
    return cross_fit_stage(run, "minirocket_ridge", Seeded(control.run_minirocket))


@pytest.fixture(scope="session")
def finetuned(run, pretrained, fit_pool):
    return cross_fit_stage(run, "enhanced_simple_lstm", Seeded(partial(classifiers.run_finetune, encoder_state=pretrained.state)),
                           plan=classifiers.finetune_steps, pool=fit_pool)


@pytest.fixture(scope="session")
def augmented_run(run, pretrained, finetuned, fit_pool):
    """Gate 5's fits: each from the gate-4 fit of the same fold and seed (the refit from gate 4's refit),
    whose model checks the labels of its pseudo-samples (made here, before the fits train)."""
    return cross_fit_stage(run, "enhanced_simple_lstm_augmented",
                           Seeded(partial(augmented.run_augmented, encoder_state=pretrained.state)),
                           prepare=partial(augmented.pseudo_samples, finetuned=finetuned),
                           plan=classifiers.finetune_steps, pool=fit_pool)


@pytest.fixture(scope="session")
def baseline(run, fit_pool):
    return cross_fit_stage(run, "simple_lstm", Seeded(classifiers.run_baseline), plan=classifiers.baseline_steps,
                           pool=fit_pool)
