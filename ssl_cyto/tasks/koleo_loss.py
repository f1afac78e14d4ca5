"""The KoLeo regulariser (Sablayrolles et al. 2019, "Spreading vectors for similarity search", ICLR),
as DINOv2 (Oquab et al. 2024, TMLR) applies it to the student's class tokens.

For L2-normalised features ``x_1..x_n`` of one batch, with ``d_i`` the distance from ``x_i`` to its
nearest other feature::

    L_koleo = -1/n * sum_i log(d_i + eps)

It grows when two features sit close together, so minimising it spreads the batch over the sphere:
what nearest-neighbour search (kNN probes, retrieval) needs. DINOv2 computes it on each rank's own
batch, once per global crop (never between the two crops of one image), weighted 0.1:
:func:`koleo_per_crop`. The loss is lightly's :class:`lightly.loss.KoLeoLoss`, run in float32.
"""

from __future__ import annotations

import torch
from lightly.loss import KoLeoLoss

from ssl_cyto.tasks.precision import Float32Loss


class KoLeoLoss32(Float32Loss, KoLeoLoss):
    """lightly's :class:`~lightly.loss.KoLeoLoss` in float32 (autocast off)."""


def koleo_per_crop(criterion: torch.nn.Module, features: torch.Tensor, n_crops: int) -> torch.Tensor:
    """KoLeo summed over the crops of a batch of ``n_crops`` stacked crops (DINOv2's
    ``sum(koleo(p) for p in student_cls_tokens.chunk(2))``): neighbours are searched within one crop's
    batch on this rank only, so the two crops of a cell are never each other's neighbour.

    Args:
        criterion: a KoLeo loss module.
        features: (n_crops * B, D) features, crop-major (crop 0's batch first).
        n_crops: number of crops stacked in ``features``.
    """
    return torch.stack([criterion(f) for f in features.chunk(n_crops)]).sum()
