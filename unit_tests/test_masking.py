import pytest
import torch

from moola.training.masking import make_mask, n_masked_steps


@pytest.mark.parametrize("strategy, expected", [("random", 16), ("block", 16), ("patch", 14)])
def test_each_row_masks_the_exact_count(strategy, expected):
    mask = make_mask(64, 105, strategy, 0.15, 7, torch.Generator().manual_seed(0))
    assert n_masked_steps(105, 0.15, strategy, 7) == expected
    assert (mask.sum(dim=1) == expected).all()


def test_block_mask_is_one_contiguous_run():
    mask = make_mask(32, 105, "block", 0.15, 7, torch.Generator().manual_seed(0))
    for row in mask:
        steps = row.nonzero().squeeze(1)
        assert (steps.diff() == 1).all()


def test_patch_mask_covers_whole_aligned_patches():
    mask = make_mask(32, 105, "patch", 0.15, 7, torch.Generator().manual_seed(0))
    patches = mask.reshape(32, 15, 7)  # (n, 105 / 7 patches, 7 steps)
    per_patch = patches.sum(dim=2)
    assert ((per_patch == 0) | (per_patch == 7)).all()


def test_masks_differ_between_rows_and_repeat_with_the_seed():
    first = make_mask(8, 105, "random", 0.15, 7, torch.Generator().manual_seed(5))
    again = make_mask(8, 105, "random", 0.15, 7, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="mask_strategy"):
        make_mask(2, 105, "stripes", 0.15, 7, torch.Generator())
