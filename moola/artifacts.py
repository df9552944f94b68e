"""Checkpoints: state dicts plus plain-data metadata, atomic writes, `weights_only=True` loads.

A cached file that cannot be used (a truncated copy, a file that is not a moola checkpoint) is
moved aside with a `CheckpointWarning` and treated as a cache miss. A well-formed file that
torch's weights-only loader refuses (it asks to import or call code) is never loaded and never
silently replaced: `CheckpointRefused` stops the run and names it.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import os
import pickletools
import shutil
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

import moola
from moola.results import jsonable, requirements_hold

log = logging.getLogger(__name__)

ENCODER = Path("pretrained/encoder_v1.pt")  # the latest run's encoder (the seed's path)
ENCODER_CACHE = Path("pretrained/cache")  # one encoder per fingerprint: switching datasets never evicts
FINETUNED = Path("models/enhanced_finetuned_v1.pt")
AUGMENTED = Path("models/enhanced_augmented_v1.pt")
BASELINE = Path("models/simple_lstm_baseline_v1.pt")
ENSEMBLE = Path("models/ensemble_v1.pt")  # gate 7's calibrated average (moola.deploy.model)
MINIROCKET = Path("models/minirocket_v1.pt")  # gate 2's control, refit on every labeled row (moola.deploy.model)
GATE_OF = {MINIROCKET: "2_control_minirocket", FINETUNED: "4_finetune_enhanced", AUGMENTED: "5_augment_train",
           BASELINE: "6_baseline_simplelstm", ENSEMBLE: "7_ensemble"}
# SimpleLSTM is gate 6's baseline, never delivered on its own; MiniRocket is gate 2's control, delivered
# only when `moola select` recommends it (`mark_selected`), whatever gate 2 said of the LSTM
DELIVERABLE_GATES = ("4_finetune_enhanced", "5_augment_train", "7_ensemble")


def save_checkpoint(path: Path, state_dict: dict, metadata: dict) -> Path:
    """Write `{"state_dict", "metadata"}` to a temp file and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
               # JSON text: plain data by construction, loadable under weights_only=True.
               "metadata": json.dumps(jsonable(metadata))}
    return save_atomic(path, payload)


def save_atomic(path: Path, payload) -> Path:
    """`torch.save` to a temp file beside `path`, then rename it over `path`: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def mark_gate(path: Path, run_id: str, status: str, reason: str | None, only_pending: bool = False,
              requires: dict | None = None) -> bool:
    """Write the gate's verdict into the metadata of the model this run saved at `path`.

    A file at a deliverable path says whether its gate passed (`metadata["gate"]["status"]`) and
    whether it may be delivered: its gate approved it, and every gate it builds on (`REQUIRES`)
    held on the same run's numbers (`requires`, from the gate line). Returns False (and leaves the
    file alone) when it is not this run's model, or when `only_pending` and its gate already ruled.
    """
    path = Path(path)
    if not path.is_file():
        return False
    state, metadata = load_checkpoint(path)
    gate = metadata.get("gate") or {}
    if gate.get("run_id") != run_id or (only_pending and gate.get("status") != "pending"):
        return False
    held, _ = requirements_hold(gate.get("gate"), requires)
    metadata["gate"] = {**gate, "status": status, "reason": reason,
                        "deliverable": status in ("passed", "warning") and gate.get("gate") in DELIVERABLE_GATES
                        and held and not metadata.get("train_labels_shuffled")}
    if requires is not None:
        metadata["gate"]["requires"] = requires
    save_checkpoint(path, state, metadata)
    return True


def update_metadata(path: Path, run_id: str, entries: dict) -> bool:
    """Add `entries` to the metadata of the model this run saved at `path` (a check computed after
    the save). False (file left alone) when the file is not this run's model."""
    path = Path(path)
    if not path.is_file():
        return False
    state, metadata = load_checkpoint(path)
    if (metadata.get("gate") or {}).get("run_id") != run_id:
        return False
    save_checkpoint(path, state, {**metadata, **entries})
    return True


def mark_selected(path: Path, run_id: str, selection: dict) -> bool:
    """Write `moola select`'s recommendation (`Selection.as_dict()`) into the recommended model's
    file; the control becomes deliverable this way. False (file left alone) when the file is not
    this run's model."""
    path = Path(path)
    if not path.is_file():
        return False
    state, metadata = load_checkpoint(path)
    gate = metadata.get("gate") or {}
    if gate.get("run_id") != run_id or metadata.get("train_labels_shuffled"):
        return False
    metadata["selected"] = selection
    metadata["gate"] = {**gate, "deliverable": True}
    save_checkpoint(path, state, metadata)
    return True


class CheckpointWarning(UserWarning):
    """A cached file could not be used: it was moved aside and the run goes on as on a cache miss."""


class CheckpointRefused(ValueError):
    """A file at a checkpoint path asks to run code when loaded: moola never loads it."""


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """Return `(state_dict, metadata)`; never unpickles code."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not is_checkpoint(payload):
        raise ValueError(f"{path}: expected a moola checkpoint with 'state_dict' and 'metadata', "
                         f"found {type(payload).__name__}; delete it or rerun with --fresh")
    return load_checkpoint_payload(payload)


def load_checkpoint_payload(payload: dict) -> tuple[dict, dict]:
    """`(state_dict, metadata)` of a payload `is_checkpoint` accepted."""
    return payload["state_dict"], json.loads(payload.get("metadata") or "{}")


def is_checkpoint(payload) -> bool:
    return (isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict)
            and isinstance(payload.get("metadata"), (str, type(None))))


def load_cached(path: Path, expect=is_checkpoint):
    """The payload at `path` (`torch.load(weights_only=True)`), or None on a cache miss.

    Missing -> None. Damaged (truncated, not a torch file) or foreign (`expect(payload)` is
    false) -> moved aside to `<name>.unreadable[.N]` with a `CheckpointWarning`, then None.
    A file whose pickles name code to import (a global outside torch's tensor rebuilders) ->
    `CheckpointRefused`, the file left where it is: it is never loaded, nor silently replaced.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- damaged bytes raise RuntimeError, UnpicklingError, EOFError, OSError …
        requests = code_requests(path)
        if requests:
            raise CheckpointRefused(
                f"{path}: torch.load(weights_only=True) refused it ({_gist(exc)}): it asks to import "
                f"{', '.join(requests[:5])} when loaded. moola never loads such a file. If you did not put "
                "it there, delete it; rerun with --fresh to move it aside and train a new one.") from None
        set_aside(path, f"unreadable ({type(exc).__name__}: {_gist(exc)})")
        return None
    if not expect(payload):
        set_aside(path, f"not a moola checkpoint (found {type(payload).__name__} "
                        f"{sorted(payload)[:5] if isinstance(payload, dict) else ''})")
        return None
    return payload


def set_aside(path: Path, why: str, suffix: str = "unreadable") -> Path | None:
    """Rename `path` to the first free `<name>.<suffix>[.N]` and warn; never deletes.

    None when the file is already gone (another run sharing the folder moved it first).
    """
    target = path.with_name(f"{path.name}.{suffix}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{suffix}.{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    message = f"{path}: {why}; moved aside to {target.name} and treated as a cache miss"
    log.warning(message)
    warnings.warn(message, CheckpointWarning, stacklevel=3)
    return target


def _gist(exc: BaseException) -> str:
    """The part of torch's message that says what went wrong (its wording varies by version)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    if "WeightsUnpickler error:" in text:  # torch 2.1: "Weights only load failed. Re-running … error: <why>"
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    return text.split(". ")[0][:300]  # torch appends paragraphs of advice after the first sentence


SAFE_GLOBALS = ("torch.", "collections.OrderedDict")  # what a moola checkpoint's pickle names


def code_requests(path: Path) -> list:
    """Globals (`module.name`) that the file's pickles ask to import, other than torch's own.

    Reads the opcodes only (`pickletools`), never executes them: every `*.pkl` of a zip archive
    (torch's format), else every pickle stream in the file (the legacy format). Stops quietly at
    damaged bytes, keeping what it found before them. A global whose name is not pushed as two
    string literals right before it (a STACK_GLOBAL fed from the memo) counts as a request:
    refusing is the safe side.
    """
    found = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                streams = [archive.read(name) for name in archive.namelist() if name.endswith(".pkl")]
        else:
            streams = [Path(path).read_bytes()]
    except Exception:  # noqa: BLE001 -- a damaged archive names nothing
        return []
    for data in streams:
        stream = io.BytesIO(data)
        try:
            while stream.tell() < len(data):  # the legacy format is several pickles in a row
                recent = []  # the last opcodes that pushed something (memo stores skipped)
                for op, arg, _ in pickletools.genops(stream):
                    if op.name in ("GLOBAL", "INST"):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":  # protocol 4+: module and name pushed just before
                        pushed = recent[-2:]
                        literal = len(pushed) == 2 and all(isinstance(value, str) for value in pushed)
                        # Fed from the memo (a name seen earlier, maybe a harmless one): unreadable here.
                        found.append(".".join(pushed) if literal else "<a global read from the memo>")
                    if op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"):
                        is_literal = isinstance(arg, str) and ("UNICODE" in op.name or op.name.endswith("STRING"))
                        recent = [*recent[-1:], arg if is_literal else None]
        except Exception:  # noqa: BLE001, S110 -- unknown opcode or truncated stream: keep what was read
            pass
    return sorted({name for name in found if not name.startswith(SAFE_GLOBALS)})


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy `source` over `target` through a temp file and a rename (never a half-written target)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


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
