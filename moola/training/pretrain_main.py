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
from pathlib import Path

import torch

from moola import artifacts
from moola.config import PretrainConfig
from moola.data.pool_file import open_pool
from moola.seeding import deterministic_cuda, seed_everything
from moola.training.distributed import World, die_with_parent
from moola.training.pretrain import pretrain_encoder


def main(argv=None) -> int:
    die_with_parent()  # a killed launcher takes its ranks with it
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    rank, size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}/{size}] %(message)s", stream=sys.stdout, force=True)
    if job["device"] == "cuda":
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    torch.distributed.init_process_group(backend)
    try:
        world = World(rank, size, backend)
        config = PretrainConfig(**job["config"])
        with deterministic_cuda(device, job["deterministic"]):
            seed_everything(job["seed"])
            result = pretrain_encoder(open_pool(job["pool"]), config, device, job["seed"],
                                      checkpoint=Path(job["checkpoint"]), fingerprint=job["fingerprint"],
                                      keep_checkpoint=True, world=world)
        if world.main:
            distributed = {"launcher": "torchrun", "devices": size, "world_size": size, "backend": backend,
                           "device_type": device.type, "global_batch": config.batch_size,
                           "rank_batch": -(-config.batch_size // size),
                           "ranks_identical": len(set(result.rank_digests)) == 1,
                           "rank_digests": result.rank_digests}
            artifacts.save_checkpoint(Path(job["entry"]), result.model_state,
                                      {**job["metadata"], **result.fields(), "distributed": distributed})
        world.barrier()  # the entry exists before any rank exits
    finally:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
