"""Gate 3: the masked-autoencoder encoder carries class signal a linear probe can read."""

import dataclasses

import pytest

from moola.stages.encoder import probe, reconstruction_check
from moola.stages.rules import probe_failures


@pytest.mark.dependency(name="gate3", depends=["gate2"], scope="session")
def test_pretrained_encoder_passes_linear_probe(run, pretrained, gate_record):
    scores = {**probe(run, pretrained.state), **reconstruction_check(run, pretrained.autoencoder_state)}
    meta = pretrained.metadata
    gate_record.model = "bilstm_masked_autoencoder"
    gate_record.config = dataclasses.asdict(run.profile.pretrain)
    gate_record.metrics = {**scores, "best_epoch": meta.get("best_epoch"), "best_val_loss": meta.get("best_val_loss"),
                           "steps": meta.get("steps"), "n_windows": meta.get("n_windows"),
                           "epochs_run": len(meta.get("history", [])),
                           # pretraining runs in the shared fixture (first used by gate 1), not in this test
                           "pretrain_duration_s": meta.get("pretrain_duration_s"),
                           "encoder_obtained_s": pretrained.duration_s, "precision": meta.get("precision"),
                           "resumed_from_epoch": meta.get("resumed_from_epoch", 0)}
    gate_record.comparison = {"baseline": "random_encoder", "baseline_balanced_acc": scores["probe_random_balanced_acc"],
                              "delta": scores["probe_balanced_acc"] - scores["probe_random_balanced_acc"]}
    resumed = meta.get("resumed_from_epoch", 0)
    gate_record.extra = {"encoder_source": pretrained.source, "encoder_fingerprint": pretrained.fingerprint,
                         "pretraining": (f"resumed after epoch {resumed}" if resumed else "from scratch")
                         if pretrained.source == "trained" else "cached (trained by an earlier run)",
                         "history": meta.get("history", []), "pool_filter": pretrained.pool_filter}
    gate_record.artifacts = {"encoder": str(pretrained.path), "encoder_cache_entry": str(pretrained.entry)}
    failures = probe_failures(scores, run.profile.thresholds)
    assert not failures, "; ".join(failures)
