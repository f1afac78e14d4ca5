"""iBOT's masked-patch loss (Zhou et al. 2022, "iBOT: Image BERT Pre-Training with Online Tokenizer",
ICLR) as DINOv2 uses it (Oquab et al. 2024, TMLR), with a choice of teacher centring.

The student sees a global crop with some patches replaced by a learnt mask token; the teacher sees
the crop whole. At every masked position the student's patch-head output is trained towards the
teacher's (cross-entropy between the teacher's targets and the student's softmax at
``student_temp``). Each image's masked patches are averaged, then the images (all global crops of
the rank, unmasked ones counting zero) are averaged, as in DINOv2's ``forward_masked``.

``centering="sinkhorn"`` (DINOv2's ``sinkhorn_knopp`` mode) makes the targets by Sinkhorn-Knopp over
all masked patches of the global batch (:func:`ssl_cyto.tasks.sinkhorn_loss.sinkhorn_knopp`: the
ranks may hold different numbers of them); ``centering="mean"`` is lightly's
:class:`lightly.loss.IBOTPatchLoss` (a moving-average centre, synchronised across ranks). Both run in
float32 under mixed precision.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightly.loss import IBOTPatchLoss
from torch import Tensor

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks.sinkhorn_loss import sinkhorn_knopp


def per_image_weights(mask: Tensor) -> Tensor:
    """``1 / (masked patches of its image)`` for every masked patch, in ``mask[mask]`` order."""
    n = mask.shape[0]
    flat = mask.reshape(n, -1)
    counts = flat.sum(dim=1, keepdim=True).clamp(min=1).float()
    return (1.0 / counts).expand_as(flat)[flat]


class IBOTLoss(IBOTPatchLoss):
    """The masked-patch loss on the masked tokens only.

    Args:
        output_dim: number of prototypes of the patch head.
        teacher_temp: teacher temperature (the task passes the scheduled one).
        student_temp: student temperature.
        center_momentum: momentum of the moving-average centre (``centering="mean"``).
        centering: ``sinkhorn`` or ``mean``.
    """

    def __init__(
        self,
        output_dim: int = 65536,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: Literal["mean", "sinkhorn"] = "sinkhorn",
    ) -> None:
        if centering not in ("mean", "sinkhorn"):
            raise InputError(f"iBOT centering is 'mean' or 'sinkhorn', got {centering!r}")
        super().__init__(
            output_dim=output_dim,
            teacher_temp=teacher_temp,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )
        self.centering = centering

    def forward(  # type: ignore[override]
        self,
        teacher_out: Tensor,
        student_out: Tensor,
        mask: Tensor,
        teacher_temp: float | None = None,
    ) -> Tensor:
        """Loss of one rank's masked patches.

        Args:
            teacher_out: (M, K) teacher patch logits at the masked positions.
            student_out: (M, K) student patch logits at the same positions.
            mask: (B, H, W) or (B, N) bool masks of the rank's global crops; ``M = mask.sum()``.
            teacher_temp: teacher temperature (default: the one given at construction).
        """
        temp = float(self.teacher_temp if teacher_temp is None else teacher_temp)
        with torch.autocast(device_type=teacher_out.device.type, enabled=False):
            t, s = teacher_out.float(), student_out.float()
            if self.centering == "mean":
                return super().forward(t, s, mask.reshape(mask.shape[0], -1, 1), teacher_temp=temp)
            targets = sinkhorn_knopp(t, temp)
            ce = -(targets * torch.log_softmax(s / self.student_temp, dim=-1)).sum(dim=-1)
            return (ce * per_image_weights(mask)).sum() / mask.shape[0]
