"""Which time steps the masked autoencoder hides: random steps, one block, or aligned patches."""

from __future__ import annotations

import torch

STRATEGIES = ("random", "block", "patch")


def n_masked_steps(n_steps: int, ratio: float, strategy: str, patch_size: int) -> int:
    """Masked steps per window. T = 105, ratio 0.15: random/block round(15.75) = 16;
    patch of 7: round(15.75 / 7) = 2 patches = 14 steps (whole patches only, at least one)."""
    if strategy == "patch":
        return max(1, round(ratio * n_steps / patch_size)) * patch_size
    return max(1, round(ratio * n_steps))


def make_mask(n_windows: int, n_steps: int, strategy: str, ratio: float, patch_size: int,
              generator: torch.Generator) -> torch.Tensor:
    """Bool mask `(n, T)`, True = hidden, with exactly `n_masked_steps` True per row.

    - random: that many distinct steps anywhere;
    - block: one contiguous run of that length;
    - patch: whole patches of `patch_size` on the grid 0, p, 2p, … (a trailing partial patch is never used).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"pretrain.mask_strategy: expected one of {STRATEGIES}, found {strategy!r}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"pretrain.mask_ratio: expected a value in (0, 1), found {ratio}")
    count = n_masked_steps(n_steps, ratio, strategy, patch_size)
    mask = torch.zeros(n_windows, n_steps, dtype=torch.bool)
    rows = torch.arange(n_windows).unsqueeze(1)  # (n, 1)
    if strategy == "random":
        order = torch.rand(n_windows, n_steps, generator=generator).argsort(dim=1)  # (n, T) random permutation
        mask[rows, order[:, :count]] = True
    elif strategy == "block":
        start = torch.randint(0, n_steps - count + 1, (n_windows, 1), generator=generator)  # (n, 1)
        mask[rows, start + torch.arange(count)] = True
    else:
        n_patches = n_steps // patch_size
        per_row = count // patch_size
        if per_row > n_patches:
            raise ValueError(f"pretrain.patch_size {patch_size}: {per_row} patches do not fit {n_steps} steps")
        chosen = torch.rand(n_windows, n_patches, generator=generator).argsort(dim=1)[:, :per_row]  # (n, k)
        steps = (chosen.unsqueeze(-1) * patch_size + torch.arange(patch_size)).reshape(n_windows, -1)  # (n, k*p)
        mask[rows, steps] = True
    return mask
