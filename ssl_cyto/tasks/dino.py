"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", ICCV)
built from lightly parts.

A student (backbone + :class:`lightly.models.modules.heads.DINOProjectionHead`) learns to match a
teacher's softmax outputs across views; the teacher is an exponential moving average (EMA) of the
student (:class:`ssl_cyto.tasks.momentum.MomentumTask`: momentum cosine-scheduled from
``momentum_teacher`` to 1 over training).
Multi-crop: the teacher sees the 2 global views, the student all views (2 global + N local).
Collapse is avoided by centring (a moving average of the teacher outputs, synchronised across
devices: lightly's ``center_mean`` all-reduces under ``torch.distributed``) and sharpening (a low
teacher temperature, warmed up linearly from ``warmup_teacher_temp``). The loss runs in float32 under
mixed precision (:mod:`ssl_cyto.tasks.precision`). As in the paper's code (``utils.clip_gradients``
then ``cancel_gradients_last_layer``), each student parameter's gradient is clipped to norm
``clip_grad`` on its own, then the last head layer's gradient is dropped during the first
``freeze_last_layer`` epochs (``clip_mode="global"``: one norm over all student gradients instead).
Weight decay follows a cosine schedule from ``weight_decay`` to ``weight_decay_end``.
``koleo_weight`` > 0 adds DINOv2's KoLeo regulariser on the student's global-crop features
(:mod:`ssl_cyto.tasks.koleo_loss`), which spreads them for nearest-neighbour search.

The teacher, its head and the loss centre are sub-modules / buffers, so they are saved in and
restored from checkpoints. :meth:`DINO.export_backbone` returns the teacher backbone (the network
DINO evaluates).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightly.models.modules.heads import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import nn

from ssl_cyto.formats.errors import InputError
from ssl_cyto.models import hub
from ssl_cyto.models.factory import patch_size_of, takes_any_size
from ssl_cyto.tasks.koleo_loss import KoLeoLoss32, koleo_per_crop
from ssl_cyto.tasks.momentum import MomentumTask
from ssl_cyto.tasks.precision import DINOLoss32
from ssl_cyto.tasks.schedule import cosine_at
from ssl_cyto.tasks.sinkhorn_loss import SinkhornDINOLoss
from ssl_cyto.transforms import ViewSpec


class DINO(MomentumTask):
    """DINO LightningModule.

    Args:
        n_local_crops: number of local views per sample (0 disables multi-crop).
        local_size: side of the local views (default ``input_size * 3 // 7``, i.e. 96 for 224, rounded to
            whole patches for released ViT weights - 98 for a ViT-S/14 -, at least
            16). A backbone that takes one input size only (timm's BEiT, for one: no
            ``dynamic_img_size``) gets its local views at ``input_size``.
        local_scale: crop area range of local views.
        head_hidden_dim: hidden width of the DINO head MLP.
        head_bottleneck_dim: bottleneck width before the weight-normalised last layer.
        head_output_dim: number of prototypes (softmax width).
        head_batch_norm: BatchNorm in the head MLP.
        norm_last_layer: keep the last layer's weight norm fixed (more stable).
        freeze_last_layer: epochs during which the last layer's gradients are dropped.
        teacher_temp: teacher temperature after warm-up.
        warmup_teacher_temp: teacher temperature at the start.
        warmup_teacher_temp_epochs: linear warm-up length (epochs, may be fractional).
        student_temp: student temperature.
        center_momentum: momentum of the centre's moving average.
        centering: ``mean`` (DINO: subtract the moving-average centre) or ``sinkhorn`` (DINOv2:
            Sinkhorn-Knopp targets over the batch, :mod:`ssl_cyto.tasks.sinkhorn_loss`).
        momentum_teacher: EMA momentum at the start (cosine-scheduled to 1; an argument of
            :class:`~ssl_cyto.tasks.momentum.MomentumTask`, default 0.996).
        weight_decay_end: weight decay at the end of the cosine weight-decay schedule.
        clip_grad: max norm of each student parameter's gradient (0 disables; the Trainer's
            ``gradient_clip_val`` takes precedence when set, with Lightning's algorithm).
        clip_mode: ``per_parameter`` (the paper: each gradient to norm ``clip_grad``) or ``global``
            (the norm of all student gradients together).
        koleo_weight: weight of the KoLeo regulariser on the student's backbone features of each
            global crop, per rank (DINOv2: 0.1; 0 turns it off, the default, as in DINO).
        lr: base learning rate (DINO's default 5e-4 per 256 images).
        weight_decay: weight decay at the start of the cosine weight-decay schedule.
        **kwargs: the other shared arguments (``backbone``, ``input_size``, ...): see
            :class:`ssl_cyto.tasks.base.SSLTask`.
    """

    method = "dino"

    def __init__(
        self,
        n_local_crops: int = 6,
        local_size: int | None = None,
        local_scale: tuple[float, float] = (0.1, 0.4),
        head_hidden_dim: int = 1024,
        head_bottleneck_dim: int = 256,
        head_output_dim: int = 4096,
        head_batch_norm: bool = False,
        norm_last_layer: bool = True,
        freeze_last_layer: int = 1,
        teacher_temp: float = 0.07,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: float = 10.0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: Literal["mean", "sinkhorn"] = "mean",
        weight_decay_end: float = 0.4,
        clip_grad: float = 3.0,
        clip_mode: Literal["per_parameter", "global"] = "per_parameter",
        koleo_weight: float = 0.0,
        lr: float = 5e-4,
        weight_decay: float = 0.04,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        self.local_size = self._local_size(local_size)
        self.student_head = self._head()
        # The teacher head is built fresh rather than deep-copied (weight_norm parametrisations do not
        # deep-copy reliably) and loaded with the student's weights.
        self.teacher_head = self._head()
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher_head)
        if centering not in ("mean", "sinkhorn"):
            raise InputError(f"DINO centering is 'mean' or 'sinkhorn', got {centering!r}")
        loss_cls = SinkhornDINOLoss if centering == "sinkhorn" else DINOLoss32
        self.criterion = loss_cls(
            output_dim=head_output_dim,
            teacher_temp=teacher_temp,
            warmup_teacher_temp=warmup_teacher_temp,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )
        self.koleo = KoLeoLoss32()

    def _local_size(self, local_size: int | None) -> int:
        if not takes_any_size(self.backbone_name, self.backbone):
            if local_size and int(local_size) != self.input_size:
                raise InputError(
                    f"backbone {self.backbone_name} takes {self.input_size} px inputs only (timm has no "
                    f"dynamic_img_size for it), so local_size={local_size} cannot be used: set "
                    "model.init_args.local_size to null or to input_size"
                )
            return self.input_size
        if local_size:
            return int(local_size)
        size = max(16, self.input_size * 3 // 7)
        # released ViT weights: a whole number of patches (98 px for a ViT-S/14 at 224, as DINOv2)
        patch = patch_size_of(self.backbone) if hub.is_released(self.backbone_name) else None
        return max(patch, round(size / patch) * patch) if patch else size

    def _head(self) -> DINOProjectionHead:
        h = self.hp
        return DINOProjectionHead(
            self.embed_dim,
            h.head_hidden_dim,
            h.head_bottleneck_dim,
            h.head_output_dim,
            batch_norm=h.head_batch_norm,
            freeze_last_layer=h.freeze_last_layer,
            norm_last_layer=h.norm_last_layer,
        )

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Backbone and head, student -> teacher."""
        return [*super().momentum_pairs(), (self.student_head, self.teacher_head)]

    def export_backbone(self) -> nn.Module:
        """The teacher backbone: the EMA network DINO evaluates."""
        return self.teacher_backbone

    def view_specs(self) -> list[ViewSpec]:
        h = self.hp
        g = tuple(h.crop_scale)
        specs = [ViewSpec(self.input_size, g, 1.0), ViewSpec(self.input_size, g, 0.1)]
        return specs + [ViewSpec(self.local_size, tuple(h.local_scale), 0.5)] * h.n_local_crops

    # ---- schedules (pure functions of the optimiser step) -----------------------------------------
    def _progress_epochs(self) -> float:
        return self.epochs_at(int(self.trainer.global_step))

    def teacher_temperature(self) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over the warm-up epochs."""
        h = self.hp
        if h.warmup_teacher_temp_epochs <= 0:
            return float(h.teacher_temp)
        f = min(1.0, self._progress_epochs() / h.warmup_teacher_temp_epochs)
        return float(h.warmup_teacher_temp + f * (h.teacher_temp - h.warmup_teacher_temp))

    def weight_decay_at(self, step: int) -> float:
        """Cosine weight-decay schedule from ``weight_decay`` to ``weight_decay_end``."""
        return cosine_at(self.run_fraction(step), self.hp.weight_decay, self.hp.weight_decay_end)

    # ---- training ---------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        wd = self.weight_decay_at(self.trainer.global_step)
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                if g["weight_decay"] > 0:
                    g["weight_decay"] = wd
        self.log("train/weight_decay", wd, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])

    def compute_loss(self, batch: list[torch.Tensor], teacher_temp: float) -> torch.Tensor:
        """DINO loss of a multi-view batch (2 global views first, then local views); updates the centre.

        Views of the same size go through the networks as one batch (shared BatchNorm statistics).
        """
        global_views, local_views = batch[:2], batch[2:]
        with torch.no_grad():
            t_out = self.teacher_head(self.teacher_backbone(torch.cat(global_views))).chunk(len(global_views))
        s_feat = self(torch.cat(global_views))
        s_out = list(self.student_head(s_feat).chunk(len(global_views)))
        if local_views:
            s_out += list(self.student_head(self(torch.cat(local_views))).chunk(len(local_views)))
        loss = self.criterion(list(t_out), s_out, teacher_temp=teacher_temp)
        if self.hp.koleo_weight:
            loss = loss + self.hp.koleo_weight * koleo_per_crop(self.koleo, s_feat, len(global_views))
        return loss

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        b = batch[0].shape[0]
        temp = self.teacher_temperature()
        loss = self.compute_loss(batch, temp)
        self.log_loss(loss, b)
        self.log("train/teacher_temp", temp, on_step=True, on_epoch=False, batch_size=b)
        return loss

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the student's gradients, then drop the last head layer's during the first epochs
        (the paper's order). The Trainer's ``gradient_clip_val``, when set, clips with Lightning's
        algorithm instead of ``clip_grad`` / ``clip_mode``."""
        if gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=gradient_clip_val,
                gradient_clip_algorithm=gradient_clip_algorithm,
            )
        elif self.hp.clip_grad and self.hp.clip_grad > 0:
            if self.hp.clip_mode == "global":
                grads = [p for p in self.parameters() if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(grads, float(self.hp.clip_grad))
            else:
                clip_per_parameter(self.parameters(), float(self.hp.clip_grad))
        self.student_head.cancel_last_layer_gradients(self.current_epoch)


@torch.no_grad()
def clip_per_parameter(params: Any, clip: float) -> None:
    """Scale each gradient whose L2 norm exceeds ``clip`` to norm ``clip`` (DINO's
    ``utils.clip_gradients``, Caron et al. 2021: ``g *= clip / (||g|| + 1e-6)`` when that is < 1)."""
    for p in params:
        if p.grad is not None:  # no host sync: a factor of exactly 1 leaves a small gradient as it is
            p.grad.mul_((clip / (p.grad.norm(2) + 1e-6)).clamp(max=1.0))
