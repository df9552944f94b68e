"""Mini-batch bounds and host-to-device copies, shared by every training and scoring loop."""

from __future__ import annotations

import torch


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """`(begin, end)` of each mini-batch over `n_rows` rows; a last batch of one row is merged.

    BatchNorm in train mode cannot normalise one row ("Expected more than 1 value per channel"),
    and `update_bn` runs the model in train mode too. So when `n_rows % batch_size == 1` the
    last row joins the batch before it (one batch of `batch_size + 1`) instead of being dropped:
    every row is still seen once an epoch. 81 rows at batch 8 -> 9 batches of 8 and one of 9.
    A single row in all (`n_rows == 1`) stays one batch: there is nothing to merge it with.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number of rows, found {batch_size}")
    bounds = [(begin, min(begin + batch_size, n_rows)) for begin in range(0, n_rows, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n_rows)]
    return bounds


def batch_for_steps(n_rows: int, steps: int) -> int:
    """The smallest batch size that cuts `n_rows` into `steps` batches (`batch_bounds`' merge
    included); the one giving the nearest count when none gives it exactly. 98 rows in 10 steps: 10."""
    if steps < 1 or n_rows < 1:
        raise ValueError(f"batch_for_steps: expected positive rows and steps, found {n_rows} rows, {steps} steps")
    best = 1
    for batch_size in range(1, n_rows + 1):
        count = len(batch_bounds(n_rows, batch_size))
        if count == steps:
            return batch_size
        if abs(count - steps) < abs(len(batch_bounds(n_rows, best)) - steps):
            best = batch_size
    return best


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to `device`; to CUDA through pinned memory, without blocking the host.

    A non-blocking copy from pinned memory lets the host prepare the next batch while this one
    transfers; the caching host allocator keeps the pinned block alive until the copy is done.
    """
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
