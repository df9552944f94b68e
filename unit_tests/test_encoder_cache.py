"""The encoder cache: one entry per fingerprint, damaged entries retrained, the seed's path the latest."""

from pathlib import Path

import pytest

from moola.artifacts import ENCODER, CheckpointWarning, load_cached, load_checkpoint_payload
from moola.stages.context import build_context, resolve_settings
from moola.stages.encoder import cache_entry, obtain_encoder

from .conftest import DataFolder

TINY = ["pretrain.hidden_size=4", "pretrain.num_layers=1", "pretrain.epochs=1", "pretrain.batch_size=16",
        "pretrain.patch_size=3"]


def context(root: Path, artifacts: Path, *overrides: str, fresh: bool = False):
    settings = resolve_settings(root, data_dir=str(root), artifacts_dir=str(artifacts), results=None, device="cpu",
                                profile="quick", overrides=[*TINY, *overrides], seed=17, fresh=fresh, demo=False)
    return build_context(settings)


@pytest.fixture
def two_datasets(tmp_path):
    return (DataFolder(tmp_path / "a", seed=1).write(), DataFolder(tmp_path / "b", seed=2).write())


def latest_fingerprint(artifacts: Path) -> str:
    return load_checkpoint_payload(load_cached(artifacts / ENCODER))[1]["fingerprint"]


def test_alternating_datasets_never_retrain_and_the_seed_path_holds_the_latest(two_datasets, tmp_path):
    artifacts = tmp_path / "artifacts"
    a, b = (context(root, artifacts) for root in two_datasets)
    first_a, first_b = obtain_encoder(a), obtain_encoder(b)
    assert (first_a.source, first_b.source) == ("trained", "trained")
    assert first_a.fingerprint != first_b.fingerprint
    assert latest_fingerprint(artifacts) == first_b.fingerprint
    again_a = obtain_encoder(a)
    assert again_a.source == "cache" and latest_fingerprint(artifacts) == first_a.fingerprint
    assert obtain_encoder(b).source == "cache" and latest_fingerprint(artifacts) == first_b.fingerprint
    assert sorted(p.name for p in (artifacts / "pretrained/cache").iterdir()) == sorted(
        [f"encoder_{first_a.fingerprint}.pt", f"encoder_{first_b.fingerprint}.pt"])


def test_another_profile_is_another_entry(two_datasets, tmp_path):
    artifacts = tmp_path / "artifacts"
    small, wider = context(two_datasets[0], artifacts), context(two_datasets[0], artifacts, "pretrain.hidden_size=6")
    assert obtain_encoder(small).source == "trained" and obtain_encoder(wider).source == "trained"
    assert obtain_encoder(small).source == "cache" and obtain_encoder(wider).source == "cache"


def test_a_truncated_cache_entry_is_retrained_not_an_error(two_datasets, tmp_path):
    artifacts = tmp_path / "artifacts"
    ctx = context(two_datasets[0], artifacts)
    trained = obtain_encoder(ctx)
    for path in (cache_entry(ctx, trained.fingerprint), artifacts / ENCODER):  # both copies damaged
        path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CheckpointWarning, match="moved aside"):
        again = obtain_encoder(ctx)
    assert again.source == "trained" and again.fingerprint == trained.fingerprint
    assert obtain_encoder(ctx).source == "cache"
    assert (cache_entry(ctx, trained.fingerprint).parent / f"encoder_{trained.fingerprint}.pt.unreadable").exists()


def test_a_seed_path_encoder_from_before_the_cache_layout_is_still_used(two_datasets, tmp_path):
    artifacts = tmp_path / "artifacts"
    ctx = context(two_datasets[0], artifacts)
    trained = obtain_encoder(ctx)
    cache_entry(ctx, trained.fingerprint).unlink()  # as an older moola left it: only encoder_v1.pt
    assert obtain_encoder(ctx).source == "cache" and cache_entry(ctx, trained.fingerprint).is_file()


def test_a_foreign_file_at_the_seed_path_is_kept_aside(two_datasets, tmp_path):
    import torch

    artifacts = tmp_path / "artifacts"
    (artifacts / ENCODER).parent.mkdir(parents=True)
    torch.save({"lstm.weight": torch.zeros(2)}, artifacts / ENCODER)  # the user's own older encoder
    with pytest.warns(CheckpointWarning, match="not a moola checkpoint"):
        trained = obtain_encoder(context(two_datasets[0], artifacts))
    assert latest_fingerprint(artifacts) == trained.fingerprint
    assert (artifacts / "pretrained/encoder_v1.pt.unreadable").is_file()


def test_fresh_moves_a_refused_seed_path_file_aside_and_publishes_the_new_encoder(two_datasets, tmp_path):
    import torch

    from moola.artifacts import CheckpointRefused

    from .test_artifacts import _Touch

    artifacts, marker = tmp_path / "artifacts", tmp_path / "code_ran"
    (artifacts / ENCODER).parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "metadata": "{}", "hook": _Touch(marker)}, artifacts / ENCODER)
    with pytest.raises(CheckpointRefused, match="--fresh"):
        obtain_encoder(context(two_datasets[0], artifacts))
    with pytest.warns(CheckpointWarning, match="--fresh: replaced, never loaded"):
        trained = obtain_encoder(context(two_datasets[0], artifacts, fresh=True))
    assert latest_fingerprint(artifacts) == trained.fingerprint and not marker.exists()
    assert (artifacts / "pretrained/encoder_v1.pt.refused").is_file()


def test_upgrading_keeps_an_old_layout_encoder_when_another_dataset_runs(two_datasets, tmp_path):
    artifacts = tmp_path / "artifacts"
    a, b = (context(root, artifacts) for root in two_datasets)
    trained_a = obtain_encoder(a)
    cache_entry(a, trained_a.fingerprint).unlink()  # only encoder_v1.pt holds A, as before the cache
    assert obtain_encoder(b).source == "trained"  # overwrites encoder_v1.pt with B ...
    assert obtain_encoder(a).source == "cache"  # ... but A joined the cache first


def test_the_resume_file_is_removed_only_after_the_encoder_is_saved(two_datasets, tmp_path, monkeypatch):
    from moola import artifacts as artifacts_module

    ctx = context(two_datasets[0], tmp_path / "artifacts")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(artifacts_module, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space"):
        obtain_encoder(ctx)
    resumes = list((tmp_path / "artifacts/pretrained/cache").glob("*.resume.pt"))
    assert len(resumes) == 1  # the finished pretraining can still be resumed instead of redone
    monkeypatch.undo()
    again = obtain_encoder(ctx)
    assert again.source == "trained" and again.metadata["resumed_from_epoch"] == 1
    # its cost counts the part before the failure too, in device-seconds
    cost = again.metadata["pretrain_cost"]
    assert again.metadata["earlier_parts_s"] > 0 and again.metadata["earlier_parts_device_s"] > 0
    assert cost["wall_s"] == pytest.approx(again.metadata["pretrain_duration_s"] + again.metadata["earlier_parts_s"])
    assert cost["device_s"] == pytest.approx(cost["wall_s"]) and cost["devices"] == 1 and "cores" in cost["machine"]
    assert again.pretrain_s == cost["device_s"]
    assert not resumes[0].exists() and cache_entry(ctx, again.fingerprint).is_file()


def test_no_pool_file_outlives_a_run_but_the_one_a_failed_torchrun_leaves_for_its_rerun(two_datasets, tmp_path):
    import numpy as np

    from moola.data.pool_file import clear_pool_files

    ctx = context(two_datasets[0], tmp_path / "artifacts")
    cache = tmp_path / "artifacts/pretrained/cache"
    cache.mkdir(parents=True)
    # a failed torchrun of another configuration, and a killed write
    left = [cache / "pool_0123.npy", cache / "encoder_0123.job.json", cache / ".pool_4567.tmp99.npy"]
    np.save(left[0], np.zeros((4, 105, 4), dtype=np.float32))
    left[1].write_text("{}")
    left[2].write_bytes(b"x")
    trained = obtain_encoder(ctx)  # in one process: it needs no pool file
    assert trained.source == "trained" and not any(path.exists() for path in left)
    assert not list(cache.glob("pool_*")) and not list(cache.glob("*.job.json"))
    # what a torchrun run keeps: its own pool and job, for a rerun after a failure
    mine, other = cache / "pool_aaaa.npy", cache / "pool_bbbb.npy"
    for path in (mine, other, cache / "encoder_aaaa.job.json", cache / "encoder_bbbb.job.json"):
        path.write_bytes(b"x")
    removed = clear_pool_files(cache, keep=mine)
    assert sorted(p.name for p in removed) == ["encoder_bbbb.job.json", "pool_bbbb.npy"]
    assert mine.exists() and (cache / "encoder_aaaa.job.json").exists()
    assert obtain_encoder(ctx).source == "cache" and not list(cache.glob("pool_*"))  # a cache hit needs none


def test_the_pool_is_filtered_chunk_by_chunk_as_it_is_whole(two_datasets, tmp_path, monkeypatch):
    import numpy as np

    from moola.stages import encoder
    from moola.stages.context import scored_rows

    ctx = context(two_datasets[0], tmp_path / "artifacts")
    args = (ctx.dataset, ctx.windows, scored_rows(ctx.folds, ctx.test), ctx.profile)
    whole = encoder.filtered_pool(*args)
    monkeypatch.setattr(encoder, "CHUNK", 7)
    chunked = encoder.filtered_pool(*args)
    np.testing.assert_array_equal(whole[0], chunked[0])
    assert whole[1] == chunked[1] and len(ctx.dataset.unlabeled.features) > 7


def test_n_devices_cost_n_times_their_wall_seconds_and_select_says_what_it_compared():
    import torch

    from moola.deploy.select import cost_notes
    from moola.stages.encoder import pretrain_cost
    from moola.stages.protocol import COST_UNIT, recipe_cost

    cost = pretrain_cost(30.0, 4, torch.device("cpu"))
    assert cost["device_s"] == 120.0 and cost["wall_s"] == 30.0
    # killed after 10 s on 4 ranks, finished in 20 s on one: each part on its own device count
    assert pretrain_cost(20.0, 1, torch.device("cpu"), 10.0, 40.0)["device_s"] == 60.0
    lines = [{"gate": "3_pretrain_bilstm", "device": "cpu", "metrics": {"pretrain_cost": cost}},
             {"gate": "4_finetune_enhanced", "metrics": {"cost": recipe_cost(pretraining=120.0, fine_tuning=5.0)}}]
    said = cost_notes(lines)
    assert said[0] == f"costs compared in {COST_UNIT}"
    assert "pretraining cost 120 device-seconds on cpu (" in said[1] and "4 device(s), 30 s wall" in said[1]
    lines[1]["metrics"]["cost"].pop("unit")
    assert "lines written before moola recorded a unit" in cost_notes(lines)[0]


def test_a_pool_another_live_run_is_writing_or_using_is_left_alone(tmp_path):
    import subprocess
    import sys

    from moola.data.pool_file import claim_pool, clear_pool_files

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cache = tmp_path / "cache"
        cache.mkdir()
        claim_pool(cache / "encoder_live.job.json", other.pid)  # its launcher runs torchrun on it
        (cache / "pool_live.npy").write_bytes(b"x")
        writing = cache / f".pool_next.tmp{other.pid}.npy"  # its write in progress
        writing.write_bytes(b"x")
        claim_pool(cache / "encoder_dead.job.json", 2**22 + 12345)  # a launcher long gone
        (cache / "pool_dead.npy").write_bytes(b"x")
        removed = clear_pool_files(cache)
        assert sorted(p.name for p in removed) == ["encoder_dead.job.json", "pool_dead.npy"]
        assert (cache / "pool_live.npy").exists() and writing.exists()
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in clear_pool_files(cache)) == [
        f".pool_next.tmp{other.pid}.npy", "encoder_live.job.json", "pool_live.npy"]
