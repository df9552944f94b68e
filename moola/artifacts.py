"""Checkpoints: state dicts plus plain-data metadata, atomic writes, `weights_only=True` loads."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import torch
from torch import nn

import moola
from moola.results import jsonable

ENCODER = Path("pretrained/encoder_v1.pt")
FINETUNED = Path("models/enhanced_finetuned_v1.pt")
AUGMENTED = Path("models/enhanced_augmented_v1.pt")
BASELINE = Path("models/simple_lstm_baseline_v1.pt")


def save_checkpoint(path: Path, state_dict: dict, metadata: dict) -> Path:
    """Write `{"state_dict", "metadata"}` to a temp file and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
               # JSON text: plain data by construction, loadable under weights_only=True.
               "metadata": json.dumps(jsonable(metadata))}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """Return `(state_dict, metadata)`; never unpickles code."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path}: expected a moola checkpoint with 'state_dict' and 'metadata', "
                         f"found {type(payload).__name__}; delete it or rerun with --fresh")
    return payload["state_dict"], json.loads(payload.get("metadata") or "{}")


def code_version(*modules) -> str:
    """moola's version plus a digest of the given modules' source: edits invalidate caches."""
    digest = hashlib.sha256(moola.__version__.encode())
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(jsonable(parts), sort_keys=True).encode()).hexdigest()[:16]


def load_encoder_weights(model: nn.Module, encoder_state: dict) -> dict:
    """Copy matching tensors into `model.encoder`; report the match ratio over the encoder's own tensors.

    The denominator is `model.encoder.state_dict()` (what the encoder needs), never the whole
    classifier, so a full match is 1.0.
    """
    target = model.encoder.state_dict()
    matched = {k: v for k, v in encoder_state.items() if k in target and target[k].shape == v.shape}
    mismatched = sorted(k for k, v in encoder_state.items() if k in target and target[k].shape != v.shape)
    model.encoder.load_state_dict({**target, **matched})
    return {"encoder_matched": len(matched), "encoder_tensors": len(target),
            "encoder_match_ratio": len(matched) / max(1, len(target)),
            "encoder_missing": sorted(set(target) - set(matched)), "encoder_shape_mismatch": mismatched,
            "encoder_unexpected": sorted(set(encoder_state) - set(target))}
