"""Seeding and device choice: the two pieces of global state every run sets."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    """"auto" -> cuda, then mps, then cpu; an explicit device that is missing raises."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: CUDA is not available to torch "
                           f"{torch.__version__} (check nvidia-smi and the torch build); or use --device auto")
    if requested == "mps" and not has_mps:
        raise RuntimeError("--device mps: MPS is not available; use --device auto or cpu")
    if requested not in ("cuda", "mps", "cpu"):
        raise ValueError(f"--device: expected auto, cuda, mps or cpu, found {requested!r}")
    return torch.device(requested)


def describe_device(device: torch.device) -> dict:
    """Name and memory of the device, for gate 0 and the results lines."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"device": f"cuda:{device.index or 0} {props.name}", "memory_gb": round(props.total_memory / 2**30, 1)}
    return {"device": device.type, "memory_gb": None}
