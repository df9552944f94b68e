"""Seeding, device choice and CUDA determinism: the global state every run sets."""

from __future__ import annotations

import contextlib
import os
import platform
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


def machine(device: torch.device, devices: int = 1) -> str:
    """What ran a computation, for comparing its seconds with another's: the GPU model, or the CPU's
    architecture and cores."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{devices} x {name}" if devices > 1 else name
    return f"{device.type} ({platform.machine()}, {os.cpu_count()} cores)"


def cudnn_tf32_allowed() -> bool:
    """Whether cuDNN may run fp32 LSTMs in TF32: `cudnn.allow_tf32` (torch's default True); newer
    torch raises on reading it once its per-op API was used, then `cudnn.rnn.fp32_precision` says."""
    cudnn = torch.backends.cudnn
    try:
        return bool(cudnn.allow_tf32)
    except RuntimeError:
        return getattr(getattr(cudnn, "rnn", None), "fp32_precision", "tf32") == "tf32"


def uses_tf32(device: torch.device) -> bool:
    """True when cuDNN runs fp32 LSTMs with TF32 tensor-core math: allowed by torch's default
    `cudnn.allow_tf32`, on compute capability 8+ (Ampere, Ada such as the RTX 4090, Hopper).
    Storage and optimizer stay fp32; the matmuls inside the LSTM round inputs to 10 mantissa bits."""
    return (device.type == "cuda" and torch.cuda.is_available() and cudnn_tf32_allowed()
            and torch.cuda.get_device_capability(device)[0] >= 8)


CUBLAS_WORKSPACE = ":4096:8"  # torch's documented setting for deterministic cuBLAS (CUDA >= 10.2)


@contextlib.contextmanager
def deterministic_cuda(device: torch.device, enabled: bool = True):
    """Make CUDA kernels deterministic inside the block; yields what was set, for the results line.

    On CUDA with `enabled`: `CUBLAS_WORKSPACE_CONFIG` (unless the user set one; cuBLAS reads it
    when its handle is created, so enter this before the first CUDA matmul), cuDNN deterministic
    with benchmarking off, the flash and memory-efficient attention kernels off (their backward
    passes are not deterministic, and under warn-only mode torch would only warn once and run
    them anyway; the math kernel is), and `torch.use_deterministic_algorithms(True,
    warn_only=True)`: any other op without a deterministic kernel warns (shown and recorded by
    the gate run) instead of failing the gate. Every flag is restored on exit. Off CUDA nothing
    is changed: the CPU kernels used here are deterministic already.
    """
    if device.type != "cuda":
        yield {"deterministic": enabled, "device": device.type}
        return
    cudnn, sdp = torch.backends.cudnn, torch.backends.cuda
    saved = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
             sdp.flash_sdp_enabled(), sdp.mem_efficient_sdp_enabled())
    try:
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            cudnn.deterministic, cudnn.benchmark = True, False
            sdp.enable_flash_sdp(False)
            sdp.enable_mem_efficient_sdp(False)
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            cudnn.deterministic, cudnn.benchmark = False, True
        yield {"deterministic": enabled, "device": "cuda", "cudnn_deterministic": cudnn.deterministic,
               "cudnn_benchmark": cudnn.benchmark, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
               "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
               "fused_attention": sdp.flash_sdp_enabled() or sdp.mem_efficient_sdp_enabled(),
               "cudnn_allow_tf32": cudnn_tf32_allowed(),
               "lstm_fp32_math": "tf32" if uses_tf32(device) else "fp32"}
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]
        sdp.enable_flash_sdp(saved[5])
        sdp.enable_mem_efficient_sdp(saved[6])
