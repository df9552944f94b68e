"""A model's recipe: what a run's numbers were computed with, so a file is delivered on them only
when it was trained by the same.

A recipe is the resolved profile (every setting, `--set`, `--cv` … included; not `--nproc`, which
changes where the encoder is computed, not what), the base
seed, the data fingerprint, the device kind, whether train labels were shuffled, and the code
version. Every results line and every saved model records it (`recipe`); `predict` compares the
file's with the line whose numbers it prints (docs/results.md "Which file predict uses").

The code version is a digest of the package's own Python source and of the gate modules that run
it, not git: the user's workflow copies the code to the pod without `.git`, and an edit to the docs
or the README must not count, while an edit under `moola/training` (or to a gate) must.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import moola
from moola.config import PROFILES, Profile

PACKAGE = Path(moola.__file__).resolve().parent


@functools.lru_cache(maxsize=4)
def code_version(package: Path = PACKAGE) -> str:
    """sha256 (12 hex digits) over every `.py` file under `package` and, beside it in a checkout,
    the gate modules (`gates/*.py`) and the root `conftest.py` that run them: relative path and bytes."""
    package = Path(package)
    root = package.parent
    files = [*package.rglob("*.py"), *(root / "gates").glob("*.py"), root / "conftest.py"]
    sha = hashlib.sha256()
    for path in sorted(files):
        if "__pycache__" in path.parts or not path.is_file():  # an editor's lock link, a checkout without gates
            continue
        sha.update(path.relative_to(root).as_posix().encode() + b"\0")
        sha.update(path.read_bytes() + b"\0")
    return sha.hexdigest()[:12]


# Settings that change where a computation runs, not what it computes: N torchrun ranks pretrain the
# encoder one process would (moola.training.pretrain), and the encoder's own fingerprint leaves the
# count out, so a later run on another --nproc reads the same cached encoder. Fit workers run each
# fit on one thread, alone or beside others: the same bits either way (moola.parallel.pool).
RESOURCES = ("pretrain.devices", "runtime.fit_workers")


def settings_changed(profile: Profile) -> dict:
    """`section.field` -> value for every setting that differs from the named profile's defaults
    (the `--set`, `--cv`, `--gate-policy` … of the run, and a data folder's own settings), less
    `RESOURCES`."""
    base = PROFILES[profile.name]() if profile.name in PROFILES else Profile()
    now, then = _flat(dataclasses.asdict(profile)), _flat(dataclasses.asdict(base))
    return {key: value for key, value in now.items() if then.get(key) != value and key not in RESOURCES}


def _config(profile: Profile) -> dict:
    """The resolved config the recipe hash covers (every setting but `RESOURCES`)."""
    return {key: value for key, value in _flat(dataclasses.asdict(profile)).items() if key not in RESOURCES}


def _flat(config: dict) -> dict:
    return {f"{section}.{key}": _plain(value) for section, fields in config.items() if isinstance(fields, dict)
            for key, value in fields.items()}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def make_recipe(profile: Profile, seed: int, data_fingerprint: str, device: str, shuffled: bool) -> dict:
    """The recipe record of a run (module docstring); `hash` covers every other entry."""
    record = {"code": code_version(), "profile": profile.name, "settings": settings_changed(profile),
              "seed": int(seed), "data": data_fingerprint, "device": device,
              "train_labels": "shuffled" if shuffled else "as given"}
    payload = json.dumps({**record, "config": _config(profile)}, sort_keys=True, default=_plain)
    return {"hash": hashlib.sha256(payload.encode()).hexdigest()[:16], **record}


WHAT = {"code": "code version (a digest of the moola package's and the gates' source)", "profile": "profile",
        "settings": "settings", "seed": "seed", "data": "data fingerprint", "device": "device",
        "train_labels": "train labels"}


def differences(saved: dict | None, scored: dict | None) -> list[str]:
    """How the recipe a file was trained with differs from the one a line's numbers come from, in
    words (empty: the same recipe). A side without a recipe (written before moola recorded one) is
    one difference."""
    if not saved or not scored:
        return ["one of them was written before moola recorded recipes"]
    if saved.get("hash") == scored.get("hash"):
        return []
    said = []
    for key, what in WHAT.items():
        if key == "settings":
            said += _setting_differences(saved.get(key) or {}, scored.get(key) or {})
        elif saved.get(key) != scored.get(key):
            said.append(f"{what} {saved.get(key)} vs {scored.get(key)}")
    return said or ["recipe digests differ"]


def _setting_differences(saved: dict, scored: dict) -> list[str]:
    return [f"--set {key}={_shown(saved.get(key))} vs {_shown(scored.get(key))}"
            for key in sorted(set(saved) | set(scored)) if saved.get(key) != scored.get(key)]


def _shown(value) -> str:
    if value is None:
        return "(default)"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def gate_command(recipe: dict) -> str:
    """The gate command that trains `recipe` again (the data folder's options left to the user)."""
    parts = ["pytest gates -x", f"--profile {recipe.get('profile')}"]
    if recipe.get("seed") not in (None, 17):
        parts.append(f"--seed {recipe['seed']}")
    parts += [f"--set {key}={_shown(value)}" for key, value in sorted((recipe.get("settings") or {}).items())]
    return " ".join(parts)
