"""The process group a training loop runs in: one process (the default) or a torchrun rank.

`World` is what the pretraining loop needs to know about its peers: its rank, how many there
are, how to sum a few numbers across them, and which contiguous share of a global batch is
its own. With `size == 1` every method is a no-op, so the single-process path calls no
`torch.distributed` function at all.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    backend: str = ""  # "gloo" (CPU) | "nccl" (CUDA) | "" (one process, no group)

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """`(begin, end)` of this rank's contiguous share of `n` items (sizes differ by at most one)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (float64; nccl needs the tensor on the rank's GPU)."""
        if self.size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()

    def gather(self, value) -> list:
        """`value` of every rank, in rank order (a picklable object)."""
        if self.size == 1:
            return [value]
        gathered = [None] * self.size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` as DistributedDataParallel whose `backward` **sums** the ranks' gradients.

        DDP's default averages them; summing lets each rank's loss keep one process's scale
        (`pretrain._rank_loss`), so fp16 loss scaling sees the gradients one process would.
        """
        if self.size == 1:
            return model
        device_ids = [device.index] if device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        ddp.register_comm_hook(None, _sum_gradients)
        return ddp


SINGLE = World()


def _sum_gradients(state, bucket):
    """DDP communication hook: all-reduce (sum) a bucket of gradients, without DDP's division by N."""
    return (torch.distributed.all_reduce(bucket.buffer(), async_op=True).get_future()
            .then(lambda future: future.value()[0]))


def state_digest(state: dict) -> str:
    """sha256 of a state dict's tensors (names, shapes and bytes): equal on ranks holding the same weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def die_with_parent(parent_variable: str) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (`PR_SET_PDEATHSIG`).

    A killed parent (the pytest run, or torchrun) does not take its children with it: torchrun's
    workers outlive it (newer torch even starts each in a session of its own, out of reach of a
    terminal's Ctrl-C), and would go on training and writing the resume file beside the rerun
    meant to continue from it. `parent_variable` names the environment variable in which the
    parent wrote its pid: a different parent now means it died before the call took effect.
    Elsewhere a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    expected = os.environ.get(parent_variable)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGKILL)
