"""DINOv2's block masks: the share of masked images, ratios inside the configured range and spread
over it, blocks rather than scattered patches, and reproducible from torch's RNG alone."""

from __future__ import annotations

import random

import pytest
import torch

from ssl_cyto.tasks.block_masking import block_masks


@pytest.mark.parametrize(("ratio", "probability"), [((0.1, 0.5), 0.5), ((0.2, 0.3), 1.0)])
def test_masks_cover_the_configured_ratio_range(ratio: tuple[float, float], probability: float) -> None:
    torch.manual_seed(0)
    n, grid = 16, (14, 14)  # ViT-S/14 at 196 px
    ratios = []
    for _ in range(20):
        masks = block_masks(n, grid, ratio, probability)
        assert masks.shape == (n, *grid) and masks.dtype == torch.bool
        per_image = masks.flatten(1).float().mean(1)
        masked = per_image[per_image > 0]
        assert len(masked) == int(n * probability)  # DINOv2's mask_sample_probability
        ratios += masked.tolist()
    lo, hi = ratio
    assert max(ratios) <= hi + 1e-9  # never above the range
    assert min(ratios) >= lo - 4 / 196  # at most one block short of the image's budget
    span = hi - lo
    # the budgets are spread evenly over the range (one sub-interval per masked image)
    assert min(ratios) < lo + 0.2 * span and max(ratios) > hi - 0.2 * span


def test_masks_are_blocks() -> None:
    torch.manual_seed(1)
    masks = block_masks(8, (16, 16), (0.3, 0.5), probability=1.0)
    # a masked patch has a masked 4-neighbour far more often than scattered patches would (~40%)
    m = masks.float()
    neighbours = torch.zeros_like(m)
    neighbours[:, 1:] += m[:, :-1]
    neighbours[:, :-1] += m[:, 1:]
    neighbours[:, :, 1:] += m[:, :, :-1]
    neighbours[:, :, :-1] += m[:, :, 1:]
    assert float(((neighbours > 0) & masks).sum() / masks.sum()) > 0.9


def test_small_grid_and_reproducible_from_torch_rng_only() -> None:
    masks = block_masks(4, (2, 2), (0.1, 0.5), probability=1.0)  # budgets below a 4-patch block
    assert masks.shape == (4, 2, 2)
    state = random.getstate()
    torch.manual_seed(7)
    a = block_masks(8, (8, 8))
    random.seed(123)  # Python's own generator plays no part, and is left as it was
    torch.manual_seed(7)
    b = block_masks(8, (8, 8))
    assert torch.equal(a, b) and not torch.equal(a, block_masks(8, (8, 8)))
    random.setstate(state)
    before = random.getstate()
    block_masks(8, (8, 8))
    assert random.getstate() == before
