"""Session fixtures: each trains (or loads) one thing once per run and hands it to the gates.

Later gates read earlier results from these fixtures, never from the results file. A narrowed
run (`-k finetune`) builds just the fixtures its gate needs: the encoder comes from the cache.
"""

from __future__ import annotations

import pytest

from moola.seeding import deterministic_cuda, seed_everything
from moola.stages import augmented, classifiers, control, encoder
from moola.stages.context import build_context


@pytest.fixture(scope="session")
def settings(request):
    return request.config.pluginmanager.get_plugin("moola-results").settings


@pytest.fixture(scope="session")
def data_check(request):
    """(dataset or None, every data problem), as read for the pytest header; None if not read."""
    return request.config.pluginmanager.get_plugin("moola-results").checked


@pytest.fixture(scope="session")
def run(request, settings):
    """Device, data (validated, normalised) and profile, with CUDA determinism set for the session
    (`runtime.deterministic`); registers the run-wide line fields."""
    plugin = request.config.pluginmanager.get_plugin("moola-results")
    ctx = build_context(settings, plugin.checked[0] if plugin.checked else None)
    with deterministic_cuda(ctx.device, ctx.profile.runtime.deterministic) as runtime:
        plugin.context = {**ctx.line_context(), "runtime": runtime}
        yield ctx


@pytest.fixture(scope="session")
def pretrained(run):
    seed_everything(run.seed)
    return encoder.obtain_encoder(run)


@pytest.fixture(scope="session")
def smoke(run, pretrained):
    seed_everything(run.seed)
    return classifiers.run_smoke(run, pretrained.state)


@pytest.fixture(scope="session")
def overfit(run, pretrained):
    seed_everything(run.seed)
    return classifiers.overfit_check(run, pretrained.state)


@pytest.fixture(scope="session")
def minirocket(run):
    seed_everything(run.seed)
    return control.run_minirocket(run)


@pytest.fixture(scope="session")
def finetuned(run, pretrained):
    seed_everything(run.seed)
    return classifiers.run_finetune(run, pretrained.state)


@pytest.fixture(scope="session")
def augmented_run(run, pretrained, finetuned):
    seed_everything(run.seed)
    return augmented.run_augmented(run, pretrained.state, finetuned)


@pytest.fixture(scope="session")
def baseline(run):
    seed_everything(run.seed)
    return classifiers.run_baseline(run)
