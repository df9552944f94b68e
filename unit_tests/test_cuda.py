"""CUDA paths: precision, determinism, re-flattened recurrent copies, and every gate end to end.

The tests that need a GPU skip without one (CI has none); run them where CUDA exists with
`pytest unit_tests/test_cuda.py --run-slow` (or `python -m moola.gpu_check`, which runs this
module and writes a JSON summary).
"""

import os
import warnings

import numpy as np
import pytest
import torch

from moola.config import FinetuneConfig
from moola.models.enhanced_lstm import EnhancedSimpleLSTM
from moola.seeding import CUBLAS_WORKSPACE, deterministic_cuda, uses_tf32
from moola.stages.classifiers import finetune_groups, finetune_options, finetune_schedule
from moola.training.averaging import make_ema, make_swa
from moola.training.classifier import fit_classifier, predict_proba
from moola.training.pretrain import precision_for

from .gate_runs import TINY, copy_data, run_gates, small_demo

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# cuBLAS reads this when its handle is created: before this module's first CUDA matmul.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def test_mixed_precision_on_cuda_is_fp16_with_a_scaler_never_bf16():
    # cuDNN's LSTM runs in fp16 under any autocast dtype: asking for bf16 would record a lie.
    assert precision_for(CUDA, enabled=True) == ("fp16", torch.float16)
    # Without autocast cuDNN runs fp32 LSTMs in TF32 on Ampere and later: recorded as such.
    assert precision_for(CUDA, enabled=False) == ("tf32" if uses_tf32(CUDA) else "fp32", None)
    assert precision_for(torch.device("cpu"), enabled=True) == ("fp32", None)


def test_deterministic_cuda_sets_every_flag_and_restores_them(monkeypatch):
    # The flags are plain process state, so this runs without a GPU too.
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with deterministic_cuda(CUDA, enabled=True) as runtime:
        assert cudnn.deterministic and not cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert runtime["cublas_workspace_config"] == CUBLAS_WORKSPACE
    assert (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    with deterministic_cuda(CUDA, enabled=False) as runtime:
        assert not cudnn.deterministic and cudnn.benchmark and runtime["deterministic"] is False
    with deterministic_cuda(torch.device("cpu")) as runtime:
        assert runtime == {"deterministic": True, "device": "cpu"}


@needs_cuda
def test_deterministic_mode_turns_the_fused_attention_kernels_off_and_back_on():
    # Their backward passes are not deterministic; warn-only mode would run them anyway.
    sdp = torch.backends.cuda
    before = (sdp.flash_sdp_enabled(), sdp.mem_efficient_sdp_enabled())
    with deterministic_cuda(CUDA, enabled=True) as runtime:
        assert not sdp.flash_sdp_enabled() and not sdp.mem_efficient_sdp_enabled()
        assert runtime["fused_attention"] is False
    assert (sdp.flash_sdp_enabled(), sdp.mem_efficient_sdp_enabled()) == before


def lstm_storages(module) -> list:
    """Per LSTM: the number of distinct storages its weights live in (1 = one flat cuDNN buffer)."""
    return [len({w.untyped_storage().data_ptr() for w in m._flat_weights})
            for m in module.modules() if isinstance(m, torch.nn.LSTM)]


@needs_cuda
def test_ema_and_swa_copies_are_reflattened_and_run_without_the_chunk_warning():
    model = EnhancedSimpleLSTM(4, hidden_size=16, num_layers=2).to(CUDA)
    assert lstm_storages(model) == [1]
    x = torch.randn(8, 12, 4, device=CUDA)
    for copy in (make_ema(model, 5), make_swa(model)):
        assert lstm_storages(copy) == [1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "not part of single contiguous chunk of memory"
            copy(x)
        copy.update_parameters(model)
        assert lstm_storages(copy) == [1]  # in-place averaging keeps the layout


def fit_on_cuda(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(33, 12, 4)).astype(np.float32)  # 33 = 4 * 8 + 1: the merged remainder too
    y = np.arange(33) % 2
    torch.manual_seed(seed)
    model = EnhancedSimpleLSTM(4, hidden_size=16, num_layers=2)
    config = FinetuneConfig(epochs=6, frozen_epochs=1, unfreeze_every=1, batch_size=8, ema_half_life=5)
    phases, lrs = finetune_schedule(config, 2)
    fit = fit_classifier(model, x, y, finetune_groups(model), phases, finetune_options(config, lrs, 6), CUDA, seed)
    return np.concatenate([predict_proba(m, x, CUDA) for m in (fit.model, fit.ema, fit.swa)])


@needs_cuda
def test_fitting_on_cuda_with_every_technique_is_deterministic():
    with deterministic_cuda(CUDA, enabled=True):
        first, second = fit_on_cuda(), fit_on_cuda()
    np.testing.assert_array_equal(first, second)


EVERY_TECHNIQUE = [*TINY, "pretrain.mixed_precision=true", "pretrain.anti_collapse_weight=0.1",
                   "ensemble.members=finetuned,augmented,baseline,minirocket", "finetune.loss=focal"]


def comparable(lines: dict) -> dict:
    """Each gate's status and metrics, without wall-clock timings."""
    return {gate: (line["status"], {k: v for k, v in line["metrics"].items()
                                     if not (k.endswith("_s") or "duration" in k)})
            for gate, line in lines.items()}


@needs_cuda
@pytest.mark.slow
def test_every_gate_runs_on_cuda_with_every_technique_and_reruns_identically(pytester, tmp_path_factory):
    # -p no:dependency: every gate runs whatever its upstream gate did (the tiny profile's gate 2
    # fails honestly on the small demo, and would skip gates 3-7, leaving their CUDA paths untried).
    data = copy_data(small_demo(tmp_path_factory), tmp_path_factory.mktemp("cuda"))
    first = run_gates(pytester, data, "--device", "cuda", "-p", "no:dependency", overrides=EVERY_TECHNIQUE,
                      name="first")
    second = run_gates(pytester, data, "--device", "cuda", "-p", "no:dependency", overrides=EVERY_TECHNIQUE,
                       name="second")
    assert len(first) == 8, sorted(first)
    # gate 7 may skip on its own (no candidate passed its gate at this size), and gate 5 when the tiny
    # gate-4 model fails gate 4's rule (after training on CUDA: the skip comes at judging); nothing else may
    assert not [g for g, line in first.items() if line["status"] in ("error", "not_run", "skipped")
                and not (g == "7_ensemble" and "nothing to average" in (line["reason"] or ""))
                and not (g == "5_augment_train" and "gate 4's rule fails" in (line["reason"] or ""))], \
        {g: (line["status"], line["reason"]) for g, line in first.items()}
    assert first["3_pretrain_bilstm"]["metrics"].get("precision") == "fp16"
    assert first["4_finetune_enhanced"]["runtime"]["cudnn_deterministic"] is True
    ran = first["4_finetune_enhanced"]["metrics"]["fits_ran"]  # auto: several processes share the GPU
    assert ran["where"] == "worker processes" and "broken" not in ran, ran
    if first["7_ensemble"]["status"] != "skipped":  # saved on CUDA, read back on the CPU
        assert first["7_ensemble"]["artifact"]["max_abs_diff_reloaded"] <= 1e-9
    # Gate runs only record warnings: these two would mean a CUDA path regressed.
    telling = [(g, w["message"][:120]) for g, line in first.items() for w in line.get("warnings", [])
               if "contiguous chunk" in w["message"] or "deterministic" in w["message"]]
    assert not telling, telling
    assert comparable(first) == comparable(second)


@needs_cuda
@pytest.mark.slow
def test_the_ensemble_gate7_saves_on_cuda_predicts_the_same_on_the_cpu(pytester, tmp_path_factory, tmp_path):
    from .gate_runs import ensemble_round_trip

    data = small_demo(tmp_path_factory)
    line, table, session = ensemble_round_trip(pytester, data, tmp_path, "cuda",
                                               members="finetuned,augmented,baseline,minirocket")
    assert line["device"].startswith("cuda") and set(line["members_used"]) >= {"baseline", "minirocket"}
    np.testing.assert_allclose(table[["p_consolidation", "p_retracement"]].to_numpy()[: len(session)], session,
                               atol=1e-9)  # the session trained on CUDA; the reference and predict run on the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_the_gpu_check_says_plainly_when_there_is_no_gpu(capsys):
    from moola.gpu_check import main

    assert main(["--out", "unused.json"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@needs_cuda
def test_batches_reach_the_gpu_from_pinned_memory_unchanged(monkeypatch):
    from moola.training.batches import to_device

    pinned = []
    original = torch.Tensor.pin_memory

    def spy(self, *args, **kwargs):
        pinned.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    batch = torch.randn(8, 12, 4)
    moved = to_device(batch, CUDA)
    assert pinned == [batch.shape]  # through page-locked memory, not a plain pageable copy
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), batch)


@needs_cuda
@pytest.mark.slow
def test_fits_in_two_gpu_workers_are_bit_identical_to_fits_one_after_another(tmp_path):
    # Each worker process enters the deterministic CUDA settings itself (a spawned child inherits none).
    from functools import partial

    from moola.parallel.pool import FitPool
    from moola.stages import classifiers
    from moola.stages.context import build_context, resolve_settings
    from moola.stages.protocol import Seeded, cross_fit_stage

    from .conftest import DataFolder
    from .gate_runs import TINY

    root = DataFolder(tmp_path / "data", n_labeled=40, n_unlabeled=40).write()
    settings = resolve_settings(root, data_dir=str(root), artifacts_dir=str(tmp_path / "artifacts"), results=None,
                                device="cuda", profile="quick", overrides=[*TINY, "evaluation.folds=4",
                                                                           "evaluation.seeds=1"],
                                seed=17, fresh=False, demo=False)
    ctx = build_context(settings)
    fit = Seeded(partial(classifiers.run_finetune, encoder_state=None))
    pool = FitPool(ctx, workers=2)
    try:
        with deterministic_cuda(CUDA, enabled=True):
            alone = cross_fit_stage(ctx, "enhanced_simple_lstm", fit, plan=classifiers.finetune_steps)
        together = cross_fit_stage(ctx, "enhanced_simple_lstm", fit, plan=classifiers.finetune_steps, pool=pool)
    finally:
        pool.close()
    assert together.ran["where"] == "worker processes" and "broken" not in together.ran
    assert np.array_equal(together.evaluation.proba, alone.evaluation.proba)
    for key, trained in alone.fits.items():
        for (name, a), (_, b) in zip(trained.model.state_dict().items(), together.fits[key].model.state_dict().items()):
            assert torch.equal(a.cpu(), b.cpu()), (key, name)
