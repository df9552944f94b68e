"""One torchrun rank of distributed pretraining: `torchrun --nproc-per-node N -m moola.training.pretrain_main JOB`.

Started by `moola.training.launch` (gate 3's fixture with `pretrain.devices N`), never by hand:
JOB is the JSON file the launcher wrote (pool file, config, seed, fingerprint, where the resume
file and the encoder go, the metadata known before training). Each rank joins the process group
(nccl on CUDA, one GPU per rank; gloo on CPU), memory-maps the pool and runs `pretrain_encoder`
with its `World`; rank 0 writes the resume file each epoch and, at the end, the encoder into the
fingerprinted cache entry, which the gate then reads like any cached encoder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import torch

from moola import artifacts
from moola.config import PretrainConfig
from moola.data.pool_file import open_pool
from moola.seeding import deterministic_cuda, seed_everything
from moola.training.distributed import World, die_with_parent
from moola.training.launch import FAILED
from moola.training.pretrain import pretrain_encoder

# A rank stuck in a collective (a peer died without torchrun noticing) errors out after this
# instead of holding the pod for NCCL's default 30 minutes.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def main(argv=None) -> int:
    """Train, then leave with `os._exit`, skipping the interpreter's teardown, success or failure.

    On torch 2.1 the gloo process group's destructor joins its worker thread while holding the
    GIL, and that thread, freeing the last collective's work, waits for the GIL: a rank that
    destroys the group (or lets teardown do it) can hang for good (seen in CI, with a gdb stack).
    Everything a rank writes is written and flushed before it leaves, and torchrun needs only
    the exit status.
    """
    die_with_parent("MOOLA_TORCHRUN_PID")  # a killed torchrun takes its ranks with it
    argv = sys.argv[1:] if argv is None else argv
    rank = os.environ.get("RANK", "?")
    status = 0
    try:
        train(json.loads(Path(argv[0]).read_text()))
    except BaseException as exc:  # noqa: BLE001 -- reported, then the rank exits 1
        traceback.print_exc()
        # one line the launcher quotes (the ranks' tracebacks interleave in torchrun's output)
        print(f"{FAILED} rank {rank}: {type(exc).__name__}: {exc}", flush=True)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def train(job: dict) -> None:
    rank, size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}/{size}] %(message)s", stream=sys.stdout, force=True)
    if job["device"] == "cuda":
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    torch.distributed.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    world = World(rank, size, backend)
    config = PretrainConfig(**job["config"])
    with deterministic_cuda(device, job["deterministic"]):
        seed_everything(job["seed"])
        result = pretrain_encoder(open_pool(job["pool"]), config, device, job["seed"],
                                  checkpoint=Path(job["checkpoint"]), fingerprint=job["fingerprint"],
                                  keep_checkpoint=True, world=world)
    if len(set(result.rank_digests)) != 1:
        raise RuntimeError(f"the {size} ranks ended with different weights (sha256 {result.rank_digests}): "
                           "DDP kept them apart, so no encoder is written. Rerun with --nproc 1")
    if world.main:
        distributed = {"launcher": "torchrun", "devices": size, "world_size": size, "backend": backend,
                       "device_type": device.type, "global_batch": config.batch_size,
                       "rank_batch": -(-config.batch_size // size),
                       "ranks_identical": True,  # checked above
                       "rank_digests": result.rank_digests}
        artifacts.save_checkpoint(Path(job["entry"]), result.model_state,
                                  {**job["metadata"], **result.fields(), "distributed": distributed})
    world.barrier()  # the entry exists, and every collective is done, before any rank exits (never destroyed: `main`)


if __name__ == "__main__":
    raise SystemExit(main())
