"""Multi-scale pooling of a timm CNN (``pool="multiscale"`` in :func:`~ssl_cyto.models.factory.build_backbone`)."""

from __future__ import annotations

import torch
from torch import nn


class MultiScalePool(nn.Module):
    """A timm CNN built with ``features_only`` whose feature maps are average-pooled and concatenated.

    Early-stage colour and texture information then reaches the embedding next to the last stage's.

    Args:
        body: a timm model created with ``features_only=True`` (returns a list of ``(B, C, H, W)``).
        dims: channels of the returned feature maps.
    """

    def __init__(self, body: nn.Module, dims: list[int]) -> None:
        super().__init__()
        self.body = body
        self.num_features = sum(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [f.mean(dim=(2, 3)) for f in self.body(x)]
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
