"""DINO's loss with Sinkhorn-Knopp centring of the teacher (DINOv2, Oquab et al. 2024, TMLR).

DINO (Caron et al. 2021) keeps the teacher from collapsing by subtracting a moving average ``c`` of its
outputs before a sharp softmax. With small batches and short runs that balance is fragile: the
teacher's distribution can drift towards uniform (the loss climbs towards ``log K``) before the student
has learnt anything (see docs/methods.md, "DINO at smoke scale"). DINOv2 replaces the centring by
three Sinkhorn-Knopp iterations over the batch (SwAV's, Caron et al. 2020): the teacher's targets
``Q`` (B x K) are made to use every prototype equally over the batch (each column sums to B / K) while
each row stays a distribution, so neither collapse (one prototype, or uniform rows) can happen.

:class:`SinkhornDINOLoss` is a drop-in for :class:`ssl_cyto.tasks.precision.DINOLoss32` (same
arguments, same ``center`` buffer, still updated so a run can switch modes, float32 under mixed
precision); under ``torch.distributed`` the sums are all-reduced, so the targets are those of the
global batch, as in DINOv2's ``sinkhorn_knopp_teacher``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ssl_cyto.tasks.precision import DINOLoss32


def _all_reduce(t: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(teacher_out: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """Teacher targets (B x K, rows sum to 1) by Sinkhorn-Knopp on ``exp(teacher_out / T)``.

    DINOv2's ``SinkhornKnoppTeacher`` (facebookresearch/dinov2, ``dinov2/loss/dino_clstoken_loss.py``),
    with the logits shifted by their (global) maximum first so ``exp`` cannot overflow; the shift is a
    constant factor that the first normalisation removes.

    The number of rows may differ between ranks (iBOT's masked patches, DINOv2's
    ``n_masked_patches_tensor``): ``B`` is their all-reduced count, and a rank may hold none
    (its empty output costs no host sync).

    Args:
        teacher_out: (B, K) teacher logits of this rank.
        teacher_temp: teacher temperature.
        n_iterations: Sinkhorn iterations (DINOv2: 3).
    """
    logits = teacher_out.float() / teacher_temp
    top = logits.max().reshape(1) if logits.numel() else logits.new_full((1,), float("-inf"))
    count = _all_reduce(logits.new_full((1,), float(logits.shape[0])))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - top).t()  # K x B
    b, k = count, q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(n_iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


class SinkhornDINOLoss(DINOLoss32):
    """Cross-entropy between Sinkhorn-Knopp teacher targets and the student's softmax (all view pairs
    but a view with itself, as :class:`lightly.loss.DINOLoss`)."""

    def forward(  # type: ignore[override]
        self,
        teacher_out: list[Tensor],
        student_out: list[Tensor],
        teacher_temp: float | None = None,
        epoch: int | None = None,
    ) -> Tensor:
        del epoch
        temp = float(self.teacher_temp if teacher_temp is None else teacher_temp)  # type: ignore[arg-type]
        with torch.autocast(device_type=teacher_out[0].device.type, enabled=False):
            t_stacked = torch.stack([t.float() for t in teacher_out])  # (T, B, K)
            n_t, b, k = t_stacked.shape
            t_prob = sinkhorn_knopp(t_stacked.reshape(n_t * b, k), temp).reshape(n_t, b, k)
            s_stacked = torch.stack([s.float() for s in student_out])
            s_logp = torch.log_softmax(s_stacked / float(self.student_temp), dim=-1)  # type: ignore[arg-type]
            loss = -torch.einsum("tbd,sbd->ts", t_prob, s_logp)
            loss.fill_diagonal_(0)
            n_terms = loss.numel() - loss.diagonal().numel()
            if n_terms == 0:
                raise ValueError("SinkhornDINOLoss needs at least two views in total")
            self.update_center(t_stacked)  # type: ignore[operator]
            return loss.sum() / (n_terms * b)
