"""A small, fast CNN for tests and CPU runs (backbone name ``tiny_cnn``)."""

from __future__ import annotations

import torch
from torch import nn

from ssl_cyto.models.errors import BackboneError


class TinyCNN(nn.Module):
    """Conv-BN-ReLU stages (stride 2 each, width doubling), globally average pooled.

    Args:
        width: channels of the first stage; each stage doubles it.
        depth: number of stages.
        pool: ``"avg"`` (global average pooling of the last stage) or ``"multiscale"``
            (concatenate the global-average-pooled features of the last ``pool_stages`` stages).
        pool_stages: stages pooled with ``pool="multiscale"``.
        stem_stride: stride of the first convolution (2: a 3x3 kernel, like every stage; 4: a 5x5 kernel,
            so the first stage's second convolution runs on a 4x smaller map: on 2 CPU cores most of
            the network's time is spent at full resolution).
    """

    def __init__(
        self, width: int = 32, depth: int = 4, pool: str = "avg", pool_stages: int = 3, stem_stride: int = 2
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise BackboneError(f"tiny_cnn needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        if stem_stride not in (2, 4):
            raise BackboneError(f"tiny_cnn's stem_stride is 2 or 4, got {stem_stride}")
        stages = []
        cin = 3
        self.widths: list[int] = []
        for i in range(depth):
            cout = width * 2**i
            stride, kernel = (stem_stride, stem_stride + 1) if i == 0 else (2, 3)
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
            )
            self.widths.append(cout)
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.pool = pool
        self.pool_stages = min(pool_stages, depth) if pool == "multiscale" else 1
        self.num_features = sum(self.widths[-self.pool_stages :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pooled = [f.mean(dim=(2, 3)) for f in feats[-self.pool_stages :]]
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
