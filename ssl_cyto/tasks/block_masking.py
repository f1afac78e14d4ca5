"""DINOv2's block-wise masking of the global crops for iBOT's masked-patch loss (Zhou et al. 2022,
"iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR; Oquab et al. 2024, DINOv2, TMLR).

A fraction ``probability`` of the images (DINOv2: 0.5) gets a mask; their target ratios are spread
evenly over ``ratio`` (DINOv2: 0.1-0.5: the i-th masked image draws its ratio from the i-th of
``n_masked`` equal sub-intervals), and each mask is made of rectangular blocks of at least
``min_block`` patches (DINOv2's ``MaskingGenerator``). The masks come from lightly's
:func:`lightly.models.utils.random_block_mask`, which draws from Python's ``random``; here that
generator is seeded from torch's RNG for the call and restored afterwards, so the masks follow the
per-step torch seed (:meth:`ssl_cyto.tasks.base.SSLTask.seed_step`): different on every rank, and
the same again after a resume.
"""

from __future__ import annotations

import random

import torch
from lightly.models.utils import random_block_mask


def block_masks(
    n_images: int,
    grid: tuple[int, int],
    ratio: tuple[float, float] = (0.1, 0.5),
    probability: float = 0.5,
    min_block: int = 4,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean patch masks (``True`` = masked) of a batch of images, DINOv2's recipe.

    Args:
        n_images: images in the batch (all global crops of this rank).
        grid: (height, width) of the patch grid.
        ratio: (min, max) fraction of an image's patches to mask.
        probability: fraction of the images that get a mask (``int(n_images * probability)`` of them).
        min_block: fewest patches in one masked block (lowered to the smallest image budget,
            ``int(height * width * ratio[0])``, on a grid too small for it).
        device: where the masks are made.

    Returns:
        (n_images, height, width) bool tensor.
    """
    # lightly refuses an image whose patch budget is below the block minimum: on a small grid the
    # smallest budget sets the minimum (DINOv2's generator shrinks its blocks the same way).
    min_block = max(0, min(min_block, int(grid[0] * grid[1] * ratio[0])))
    seed = int(torch.randint(0, 2**62, (1,)).item())
    state = random.getstate()
    random.seed(seed)
    try:
        return random_block_mask(
            size=(n_images, *grid),
            batch_mask_ratio=probability,
            min_image_mask_ratio=ratio[0],
            max_image_mask_ratio=ratio[1],
            min_num_masks_per_block=min_block,
            device=device,
        )
    finally:
        random.setstate(state)
