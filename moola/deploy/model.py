"""The approved model as a file: save gate 7's ensemble, load it (or one gate's model), predict.

An ensemble artifact is a moola checkpoint (`artifacts.save_checkpoint`: tensors plus JSON
metadata, loadable with `torch.load(weights_only=True)`): every member's weights under
`member.<name>.`, its isotonic calibrator as knot arrays under `calibrator.<name>.<class>.x/.y`,
and a few raw reference windows with the probabilities the saving session computed for them
(`reference.*`). Loading recomputes those probabilities: a file that no longer gives them (other
numerics, a damaged copy) is refused, never used silently.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moola import artifacts, models
from moola.data.inputs import InputSpec, model_inputs
from moola.models.minirocket import MiniRocketArrays
from moola.results import requirements_hold
from moola.stages.rules import refit_failures
from moola.training.calibration import apply_calibrator
from moola.training.classifier import predict_proba

FORMAT = 1  # bump when the layout below changes; a file of another format is refused with the fix
KIND = "moola-ensemble"
REFERENCE_ROWS = 32  # raw windows kept in the file to check, at load, that it still computes what it did
# Probabilities. The reference is computed on the CPU; another CPU (x86 vs ARM, another numba
# target for MiniRocket's fastmath kernels) moves them by up to ~2e-4 (measured); a damaged file is
# caught exactly by the tensors' digests, not by this.
REFERENCE_ATOL = 1e-3
MODELS = {"ensemble": artifacts.ENSEMBLE, "finetuned": artifacts.FINETUNED, "augmented": artifacts.AUGMENTED,
          "minirocket": artifacts.MINIROCKET, "baseline": artifacts.BASELINE}
MEMBER_FILES = ("ensemble", "minirocket")  # written by `save_ensemble` (members + reference); the rest: one network


class DeploymentError(ValueError):
    """No usable approved model: the message says which file, why, and the fix."""


@dataclass
class Member:
    """One model of a deployed predictor: the network, and its calibrator (None: softmax as is)."""

    name: str
    model: nn.Module | MiniRocketArrays
    calibrator: list | None = None  # per class (x knots, y knots), `training.calibration.fit_calibrator`
    info: dict = field(default_factory=dict)


@dataclass
class Deployed:
    """A predictor read from a file (or built in a session): members averaged after calibration."""

    kind: str  # "ensemble", "minirocket", "finetuned", "augmented", "baseline"
    members: list
    classes: list
    input: dict  # window_shape [T, C], channels, normalisation, and `InputSpec.record()`: how raw windows become inputs
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def calibrated(self) -> bool:
        return all(member.calibrator is not None for member in self.members)

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_record(self.input)

    def member_proba(self, raw_windows: np.ndarray, device: torch.device | str = "cpu",
                     spans: np.ndarray | None = None) -> dict:
        """Each member's probabilities `(n, K)` before calibration, for raw windows `(n, T, C)` (and
        their labeled spans `(n, 2)`, when the models read them: `moola.data.inputs`)."""
        windows = model_inputs(raw_windows, self.spec, spans)
        device = torch.device(device)
        return {m.name: predict_proba(m.model.to(device), windows, device) if isinstance(m.model, nn.Module)
                else m.model.predict_proba(windows) for m in self.members}

    def predict_proba(self, raw_windows: np.ndarray, device: torch.device | str = "cpu",
                      spans: np.ndarray | None = None) -> np.ndarray:
        """Calibrated, averaged class probabilities `(n, K)` for raw windows `(n, T, C)` (and spans `(n, 2)`)."""
        raw = self.member_proba(raw_windows, device, spans)
        calibrated = [apply_calibrator(m.calibrator, raw[m.name]) if m.calibrator is not None else raw[m.name]
                      for m in self.members]
        return np.mean(calibrated, axis=0)


def on_cpu(deployed: Deployed) -> Deployed:
    """A copy whose networks run on the CPU, where every load check runs (a GPU's TF32 LSTM kernels
    differ from the CPU's by more than the reference tolerance); `deployed` stays where it is."""
    members = [Member(m.name, copy.deepcopy(m.model).cpu() if isinstance(m.model, nn.Module) else m.model,
                      m.calibrator, m.info) for m in deployed.members]
    return dataclasses.replace(deployed, members=members)


def digest(state: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: a damaged copy changes it."""
    sha = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        sha.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def save_ensemble(path: Path, deployed: Deployed, reference_windows: np.ndarray, metadata: dict,
                  reference_spans: np.ndarray | None = None) -> Path:
    """Write `deployed` as one weights-only file, with `reference_windows` `(n, T, C)` (raw; and their
    spans `(n, 2)` when the models read them) and the probabilities it gives them on the CPU."""
    reference = np.asarray(reference_windows[:REFERENCE_ROWS], dtype=np.float64)
    spans = None if reference_spans is None else np.asarray(reference_spans[:REFERENCE_ROWS], dtype=np.int64)
    cpu = on_cpu(deployed)
    state = {"reference.windows": torch.from_numpy(reference),
             "reference.proba": torch.from_numpy(cpu.predict_proba(reference, spans=spans))}
    if spans is not None:
        state["reference.spans"] = torch.from_numpy(spans)
    for name, proba in cpu.member_proba(reference, spans=spans).items():
        state[f"reference.member.{name}"] = torch.from_numpy(proba)
    for member in deployed.members:
        state.update({f"member.{member.name}.{key}": value for key, value in member.model.state_dict().items()})
        for k, (x, y) in enumerate(member.calibrator or []):
            state[f"calibrator.{member.name}.{k}.x"] = torch.from_numpy(np.asarray(x, dtype=np.float64))
            state[f"calibrator.{member.name}.{k}.y"] = torch.from_numpy(np.asarray(y, dtype=np.float64))
    metadata = {**metadata, "kind": KIND, "format": FORMAT, "classes": list(deployed.classes), "input": deployed.input,
                "members": [{"name": m.name, "architecture": _architecture(m.model),
                             "calibrated": m.calibrator is not None, **m.info} for m in deployed.members],
                "reference": {"rows": len(reference), "device": "cpu", "atol": REFERENCE_ATOL},
                "sha256": digest(state)}
    return artifacts.save_checkpoint(path, state, metadata)


def _architecture(model) -> dict:
    if isinstance(model, MiniRocketArrays):
        return {"class": "MiniRocketArrays", "args": {}}
    return models.architecture(model)


def _rebuild(spec: dict, state: dict):
    """The member network (or MiniRocket's arrays) `spec` describes, loaded with `state`."""
    if isinstance(spec, dict) and spec.get("class") == "MiniRocketArrays":
        return MiniRocketArrays.from_state_dict(state)
    model = models.rebuild(spec)
    model.load_state_dict(state)
    return model.eval()


def load_deployed(path: Path, kind: str = "ensemble") -> Deployed:
    """Read an ensemble artifact or one gate's model checkpoint; refuse what cannot be trusted."""
    path = Path(path)
    try:
        state, metadata = artifacts.load_checkpoint(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged or foreign file: say so, with the fix
        raise DeploymentError(f"{path}: expected a moola checkpoint readable with torch.load(weights_only=True), "
                              f"found one that is not ({type(exc).__name__}: {str(exc)[:200]}). Fix: rerun the gates "
                              "that write it (pytest gates -x), or copy the file again") from None
    made_by = (metadata.get("versions") or {})
    if kind in MEMBER_FILES:
        return _load_ensemble(path, state, metadata, made_by, kind)
    try:
        model = models.rebuild(metadata.get("architecture"))
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 -- an architecture this moola cannot build
        raise _incompatible(path, made_by, f"its network cannot be rebuilt here ({str(exc)[:200]})") from None
    input_contract = metadata.get("input") or {}
    if "shared_channels" not in input_contract or not metadata.get("classes"):
        raise _incompatible(path, made_by, "it lacks the input contract or class names (written before they were recorded)")
    return Deployed(kind, [Member(kind, model.eval())], list(metadata["classes"]), input_contract, metadata, path)


def _load_ensemble(path: Path, state: dict, metadata: dict, made_by: dict, kind: str = "ensemble") -> Deployed:
    if metadata.get("kind") != KIND or metadata.get("format") != FORMAT:
        raise _incompatible(path, made_by, f"expected a {KIND} file of format {FORMAT}, found kind "
                                           f"{metadata.get('kind')!r} format {metadata.get('format')!r}")
    if metadata.get("sha256") != digest(state):
        raise DeploymentError(f"{path}: its tensors' sha256 differs from the one written with them: the file was "
                              "changed or damaged after gate 7 saved it. Fix: copy it again from the machine that "
                              "ran the gates, or rerun gate 7 (pytest gates -k ensemble)")
    members = []
    try:
        for info in metadata["members"]:
            name = info["name"]
            prefix = f"member.{name}."
            model = _rebuild(info["architecture"], {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            calibrator = None
            if info.get("calibrated"):
                calibrator = [(state[f"calibrator.{name}.{k}.x"].numpy(), state[f"calibrator.{name}.{k}.y"].numpy())
                              for k in range(len(metadata["classes"]))]
            extra = {key: value for key, value in info.items() if key not in ("name", "architecture", "calibrated")}
            members.append(Member(name, model, calibrator, extra))
    except Exception as exc:  # noqa: BLE001 -- missing tensors, other shapes: not this version's layout
        raise _incompatible(path, made_by, f"its members cannot be rebuilt here ({type(exc).__name__}: "
                                           f"{str(exc)[:200]})") from None
    deployed = Deployed(kind, members, list(metadata["classes"]), metadata["input"], metadata, path)
    check_reference(deployed, state, path, made_by)
    return deployed


def check_reference(deployed: Deployed, state: dict, path: Path, made_by: dict) -> float:
    """Recompute the saved reference windows' probabilities, each member's before calibration (an
    isotonic map is flat over stretches and would hide a change) and the ensemble's; refuse the
    file when any moved beyond `REFERENCE_ATOL`. Returns the largest difference."""
    windows = state["reference.windows"].numpy()
    spans = state["reference.spans"].numpy() if "reference.spans" in state else None
    found = deployed.member_proba(windows, spans=spans)
    pairs = [(f"member {name}", state[f"reference.member.{name}"].numpy(), found[name]) for name in found]
    pairs.append(("ensemble", state["reference.proba"].numpy(), deployed.predict_proba(windows, spans=spans)))
    worst, where = 0.0, ""
    for name, expected, now in pairs:
        gap = float(np.abs(now - expected).max()) if len(windows) else 0.0
        if not gap <= worst:  # NaN counts as worst
            worst, where = gap, name
    if not worst <= REFERENCE_ATOL:
        raise _incompatible(path, made_by, f"on its {len(windows)} reference windows it now gives probabilities up "
                                           f"to {worst:.2g} away ({where}) from those the saving session computed "
                                           f"(tolerance {REFERENCE_ATOL:g})")
    return worst


def _incompatible(path: Path, made_by: dict, why: str) -> DeploymentError:
    from moola.results import versions

    here = versions()
    saved = ", ".join(f"{k} {made_by.get(k)}" for k in ("moola", "git", "torch", "numpy") if made_by.get(k)) or "unknown"
    now = ", ".join(f"{k} {here.get(k)}" for k in ("moola", "git", "torch", "numpy") if here.get(k))
    where = ("the same versions: the difference comes from the machine (another CPU architecture, another numba "
             "target); " if saved == now else "")
    return DeploymentError(f"{path}: made by {saved}; this is {now}: {why}. {where}Fix: rerun the gate that writes it "
                           "with this installation on this kind of machine (pytest gates -x, or pytest gates -k "
                           "ensemble), or predict where it was made")


def approval(metadata: dict, kind: str) -> tuple[bool, str]:
    """Whether the file's gate approved it, and the words saying so (`metadata["gate"]`, written by
    the results plugin once its gate ruled)."""
    gate = metadata.get("gate") or {}
    status, reason = gate.get("status"), gate.get("reason")
    said = f"gate {gate.get('gate')} {status}" + (f" ({reason})" if reason else "") + f" in run {gate.get('run_id')}"
    if metadata.get("train_labels_shuffled"):
        return False, said + ": a negative-control model (train labels shuffled)"
    strayed = saved_refit_failures(metadata)  # the file is not the recipe its gate scored, whatever it said
    if strayed:
        return False, f"{said}, but " + "; ".join(strayed)
    if kind == "baseline":  # gate 6's comparison model: usable once its gate ruled, never the deliverable
        return status in ("passed", "warning"), said
    if kind == "minirocket":  # gate 2's control: delivered when `moola select` recommends it
        chosen = metadata.get("selected") or {}
        if gate.get("deliverable") and chosen:
            return True, f"recommended by moola select in run {chosen.get('run_id')} ({chosen.get('rule')})"
        return False, (f"MiniRocket (gate 2's control) of run {gate.get('run_id')}: moola select did not recommend "
                       "it (python -m moola select shows why)")
    held, why = requirements_hold(gate.get("gate"), gate.get("requires"))
    if gate.get("deliverable") and not held:  # a file marked before moola checked what it builds on
        return False, f"{said}: {why}"
    return bool(gate.get("deliverable")), said


def saved_refit_failures(metadata: dict) -> list[str]:
    """The refit floor (`stages.rules.refit_failures`) on a file's recorded check(s): one network's
    `refit_check`, or an ensemble's per member."""
    if metadata.get("refit_checks"):
        return [f"member {name}: {failure}" for name, check in metadata["refit_checks"].items()
                for failure in refit_failures(check)]
    return refit_failures(metadata.get("refit_check"))

