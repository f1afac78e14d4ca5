"""SimCLR (Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML) built from lightly parts.

Two augmented views of each cell go through the backbone and a projection MLP
(:class:`lightly.models.modules.heads.SimCLRProjectionHead`); the NT-Xent loss
(:class:`lightly.loss.NTXentLoss`, computed in float32 under mixed precision:
:mod:`ssl_cyto.tasks.precision`) pulls the two views of a cell together and pushes every other
view in the global batch away (``gather_distributed=True``: negatives from all devices).

By default both views go through the network as ONE batch (``concat_views=True``) so BatchNorm
normalises with statistics of both views together, as in the paper's global BN; with separate
forwards each view batch would get its own statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.models.modules.heads import SimCLRProjectionHead

from ssl_cyto.tasks.base import SSLTask
from ssl_cyto.tasks.precision import NTXentLoss32
from ssl_cyto.transforms import ViewSpec


class SimCLR(SSLTask):
    """SimCLR LightningModule.

    Args:
        temperature: NT-Xent temperature (0.1-0.5; lower is sharper; 0.2 suits batches of 128-512).
        projection_hidden_dim: hidden width of the projection MLP.
        projection_dim: output width of the projection MLP (the space of the loss).
        projection_layers: layers of the projection MLP (2 as in SimCLR v1, 3 as in v2).
        concat_views: forward both views as one batch (shared BatchNorm statistics).

    Optimiser default: AdamW, ``lr=2e-3`` per 256 images, weight decay 0.05. The paper's LARS
    (``optimizer="lars", lr=0.3, weight_decay=1e-6``) is meant for batches of thousands: its
    trust ratio moves each layer by about ``lr * 0.001`` of its norm per step, so at batch 128 a
    short run barely changes the weights (measured on the PBC subset, ResNet-18 at 64 px: LARS
    left kNN-20 at the random-init value, AdamW raised it; see docs/methods.md).

    The shared arguments (``backbone``, ``backbone_kwargs``, ``input_size``, ``optimizer``, ``lr``,
    ``weight_decay``, ``warmup_epochs``, ...) are those of :class:`ssl_cyto.tasks.base.SSLTask`,
    with its defaults.
    """

    method = "simclr"

    def __init__(
        self,
        temperature: float = 0.2,
        projection_hidden_dim: int = 512,
        projection_dim: int = 128,
        projection_layers: int = 2,
        concat_views: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.projection_head = SimCLRProjectionHead(
            self.embed_dim, projection_hidden_dim, projection_dim, num_layers=projection_layers
        )
        self.criterion = NTXentLoss32(temperature=temperature, gather_distributed=True)

    def view_specs(self) -> list[ViewSpec]:
        spec = ViewSpec(self.input_size, tuple(self.hp.crop_scale), self.hp.blur_p)
        return [spec, spec]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone then projection head: (B, 3, H, W) -> (B, projection_dim)."""
        return self.projection_head(self(x))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0, x1 = batch[0], batch[1]
        if self.hp.concat_views:
            z0, z1 = self.project(torch.cat([x0, x1])).chunk(2)
        else:
            z0, z1 = self.project(x0), self.project(x1)
        loss = self.criterion(z0, z1)
        self.log_loss(loss, x0.shape[0])
        return loss
