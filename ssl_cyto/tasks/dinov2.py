"""DINOv2 (Oquab et al. 2024, "DINOv2: Learning Robust Visual Features without Supervision", TMLR)
built from lightly parts: the recipe DinoBloom (Koch et al. 2024, MICCAI) continues on blood cells.

Three losses on a student ViT, against an EMA teacher (:class:`ssl_cyto.tasks.dino.DINO`'s schedules:
teacher momentum, teacher temperature, weight decay, gradient clipping, frozen last layer):

* DINO's loss on the image token (the ViT's class token) of 2 global + N local crops, through a
  :class:`lightly.models.modules.heads.DINOv2ProjectionHead`;
* iBOT's masked-patch loss (:mod:`ssl_cyto.tasks.ibot_loss`): the student sees the global crops
  with DINOv2's block masks (:mod:`ssl_cyto.tasks.block_masking`), the teacher sees them whole, and
  at every masked position the student's patch head is trained towards the teacher's; a separate
  patch head by default (``ibot_separate_head``, DinoBloom's choice), the DINO head as an option;
* KoLeo (:mod:`ssl_cyto.tasks.koleo_loss`) on the student's global class tokens, per crop and per
  rank as DINOv2 computes it, which spreads the features for nearest-neighbour search.

Both distillation losses use Sinkhorn-Knopp teacher targets by default (``centering="sinkhorn"``,
DINOv2's ``sinkhorn_knopp``; ``mean`` is DINO's moving-average centring). The student gets
stochastic depth (``drop_path_rate``; the teacher none); layer-wise LR decay is optional
(``layerwise_decay`` < 1, :func:`ssl_cyto.tasks.optim.layerwise_param_groups`). The backbone must be
a timm ``VisionTransformer`` (a CNN is refused, naming ViTs that work); pretrained weights (a
``checkpoint_path``) are kept as they are when the ViT is wrapped (:mod:`ssl_cyto.tasks.masked_vit`).
:meth:`export_backbone` returns the teacher ViT, whose class token is the embedding.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from lightly.models.modules.heads import DINOv2ProjectionHead
from lightly.models.modules.masked_vision_transformer_timm import MaskedVisionTransformerTIMM
from lightly.models.utils import deactivate_requires_grad
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks.block_masking import block_masks
from ssl_cyto.tasks.dino import DINO
from ssl_cyto.tasks.ibot_loss import IBOTLoss
from ssl_cyto.tasks.koleo_loss import koleo_per_crop
from ssl_cyto.tasks.masked_vit import patch_grid, pooled, require_vit, set_drop_path, token_mask, wrap_vit
from ssl_cyto.tasks.optim import build_optimizer, layerwise_param_groups


class DINOv2Head(DINOv2ProjectionHead):
    """lightly's DINOv2 head (3-layer MLP, L2-normalised bottleneck, weight-normalised prototypes)
    whose last layer can be frozen for the first epochs, as DINOv2's ``freeze_last_layer_epochs``. Its
    prototypes' norms are trained, as in DINOv2 (DINO's ``norm_last_layer`` does not apply)."""

    def __init__(self, *args: Any, freeze_last_layer: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_last_layer = freeze_last_layer

    def cancel_last_layer_gradients(self, current_epoch: int) -> None:
        """Drop the prototypes' gradients while ``current_epoch < freeze_last_layer``."""
        if current_epoch >= self.freeze_last_layer:
            return
        for p in self.last_layer.parameters():
            p.grad = None


class DINOv2(DINO):
    """DINOv2 LightningModule (DINO + iBOT + KoLeo on a ViT).

    Args:
        ibot_weight: weight of the masked-patch loss (DINOv2: 1.0).
        ibot_separate_head: a patch head of its own (default; DinoBloom) or the DINO head for patches
            too (DINOv2's default).
        ibot_head_output_dim: prototypes of the separate patch head (default ``head_output_dim``).
        ibot_head_bottleneck_dim: bottleneck of the separate patch head (default ``head_bottleneck_dim``).
        mask_ratio: (min, max) fraction of a masked crop's patches to mask (DINOv2: 0.1-0.5).
        mask_probability: fraction of the global crops that get a mask (DINOv2: 0.5).
        mask_min_block: fewest patches in one masked block (DINOv2: 4).
        koleo_weight: weight of KoLeo on the student's global class tokens (DINOv2: 0.1).
        drop_path_rate: stochastic depth of the student (DINOv2 ViT-S: 0.1 to 0.4).
        drop_path_uniform: the same rate in every block (DINOv2) rather than rising with depth.
        layerwise_decay: layer-wise LR decay per block (1.0 turns it off; DINOv2: 0.9).
        patch_embed_lr_mult: LR factor of the patch embedding, with or without layer-wise decay
            (DINOv2: 0.2).
        centering: ``sinkhorn`` (DINOv2) or ``mean`` teacher centring, for both losses.
        backbone: a timm ViT name (default DINOv2's ViT-S/14 architecture, random weights unless
            ``checkpoint_path`` is given).
        input_size, head_hidden_dim, head_bottleneck_dim, head_output_dim, momentum_teacher,
            teacher_temp, warmup_teacher_temp_epochs, weight_decay, weight_decay_end, lr,
            lr_scaling, clip_mode: as :class:`~ssl_cyto.tasks.dino.DINO` / :class:`SSLTask`, with
            DINOv2's defaults (``lr`` 2e-3 with ``sqrt`` scaling per 256 = DINOv2's 4e-3
            ``sqrt_wrt_1024``).
        **kwargs: the other arguments of :class:`~ssl_cyto.tasks.dino.DINO` and
            :class:`~ssl_cyto.tasks.base.SSLTask`.
    """

    method = "dinov2"

    def __init__(
        self,
        ibot_weight: float = 1.0,
        ibot_separate_head: bool = True,
        ibot_head_output_dim: int | None = None,
        ibot_head_bottleneck_dim: int | None = None,
        mask_ratio: tuple[float, float] = (0.1, 0.5),
        mask_probability: float = 0.5,
        mask_min_block: int = 4,
        koleo_weight: float = 0.1,
        drop_path_rate: float = 0.1,
        drop_path_uniform: bool = True,
        layerwise_decay: float = 1.0,
        patch_embed_lr_mult: float = 1.0,
        centering: Literal["mean", "sinkhorn"] = "sinkhorn",
        backbone: str = "vit_small_patch14_dinov2",
        input_size: int = 224,
        head_hidden_dim: int = 2048,
        head_bottleneck_dim: int = 256,
        head_output_dim: int = 65536,
        momentum_teacher: float = 0.992,
        teacher_temp: float = 0.07,
        warmup_teacher_temp_epochs: float = 30.0,
        weight_decay: float = 0.04,
        weight_decay_end: float = 0.4,
        lr: float = 2e-3,
        lr_scaling: Literal["linear", "sqrt", "none"] = "sqrt",
        clip_mode: Literal["per_parameter", "global"] = "global",
        **kwargs: Any,
    ) -> None:
        if not 0 <= mask_ratio[0] <= mask_ratio[1] <= 1 or not 0 <= mask_probability <= 1:
            raise InputError(
                f"model.init_args.mask_ratio must be 0 <= min <= max <= 1 and mask_probability in [0, 1]; "
                f"got mask_ratio={list(mask_ratio)}, mask_probability={mask_probability}"
            )
        super().__init__(
            centering=centering,
            backbone=backbone,
            input_size=input_size,
            head_hidden_dim=head_hidden_dim,
            head_bottleneck_dim=head_bottleneck_dim,
            head_output_dim=head_output_dim,
            momentum_teacher=momentum_teacher,
            teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
            weight_decay=weight_decay,
            weight_decay_end=weight_decay_end,
            lr=lr,
            lr_scaling=lr_scaling,
            clip_mode=clip_mode,
            koleo_weight=koleo_weight,
            **kwargs,
        )
        require_vit(backbone, self.backbone)
        set_drop_path(self.vit, drop_path_rate, uniform=drop_path_uniform)
        set_drop_path(self.teacher_vit, 0.0)
        # zeros, as DINOv2 initialises it (timm's released ViTs do not carry DINOv2's trained mask token)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.vit.embed_dim))
        if ibot_separate_head:
            self.student_ibot_head = self._head(ibot_head_output_dim, ibot_head_bottleneck_dim)
            self.teacher_ibot_head = self._head(ibot_head_output_dim, ibot_head_bottleneck_dim)
            self.teacher_ibot_head.load_state_dict(self.student_ibot_head.state_dict())
            deactivate_requires_grad(self.teacher_ibot_head)
        self.ibot_criterion = IBOTLoss(
            output_dim=(ibot_head_output_dim or head_output_dim) if ibot_separate_head else head_output_dim,
            teacher_temp=teacher_temp,
            student_temp=float(self.hp.student_temp),
            center_momentum=float(self.hp.center_momentum),
            centering=centering,
        )

    def _head(self, output_dim: int | None = None, bottleneck_dim: int | None = None) -> DINOv2Head:  # type: ignore[override]
        h = self.hp
        return DINOv2Head(
            self.embed_dim,
            h.head_hidden_dim,
            bottleneck_dim or h.head_bottleneck_dim,
            output_dim or h.head_output_dim,
            batch_norm=h.head_batch_norm,
            freeze_last_layer=h.freeze_last_layer,
        )

    # ---- the networks -----------------------------------------------------------------------------
    def _wrapped(
        self, key: str, vit: nn.Module, mask_token: nn.Parameter | None
    ) -> MaskedVisionTransformerTIMM:
        """The maskable view of ``vit``, made once and kept outside the module tree (no second copy of
        the weights in checkpoints); remade if the ViT module was replaced."""
        wrapper = self.__dict__.get(key)
        if wrapper is None or wrapper.vit is not vit or wrapper.mask_token is not mask_token:
            wrapper = wrap_vit(vit, mask_token)  # type: ignore[arg-type]
            self.__dict__[key] = wrapper
        return wrapper

    @property
    def vit(self) -> VisionTransformer:
        """The student ViT (``backbone``), typed."""
        return cast(VisionTransformer, self.backbone)

    @property
    def teacher_vit(self) -> VisionTransformer:
        """The teacher ViT (``teacher_backbone``), typed."""
        return cast(VisionTransformer, self.teacher_backbone)

    @property
    def student_encoder(self) -> MaskedVisionTransformerTIMM:
        """The student ViT (``backbone``) as a maskable token encoder, with the task's mask token."""
        return self._wrapped("_student_encoder", self.backbone, self.mask_token)

    @property
    def teacher_encoder(self) -> MaskedVisionTransformerTIMM:
        """The teacher ViT as a token encoder (never masked)."""
        return self._wrapped("_teacher_encoder", self.teacher_backbone, None)

    @property
    def ibot_heads(self) -> tuple[nn.Module, nn.Module]:
        """(student, teacher) patch heads: their own, or the DINO heads when shared."""
        if self.hp.ibot_separate_head:
            return self.student_ibot_head, self.teacher_ibot_head
        return self.student_head, self.teacher_head

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Backbone, DINO head and (when separate) the patch head, student -> teacher."""
        pairs = super().momentum_pairs()
        if self.hp.ibot_separate_head:
            pairs.append((self.student_ibot_head, self.teacher_ibot_head))
        return pairs

    def block_masks(self, n_images: int, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        """DINOv2's block masks of this rank's ``n_images`` global crops (drawn from torch's RNG)."""
        h = self.hp
        return block_masks(
            n_images, grid, tuple(h.mask_ratio), float(h.mask_probability), int(h.mask_min_block), device
        )

    def koleo_term(self, global_cls: torch.Tensor, n_crops: int) -> torch.Tensor:
        """KoLeo of the student's global class tokens, per crop on this rank's batch (DINOv2)."""
        return koleo_per_crop(self.koleo, global_cls, n_crops)

    # ---- the loss ---------------------------------------------------------------------------------
    def compute_loss(self, batch: list[torch.Tensor], teacher_temp: float) -> torch.Tensor:
        """DINO + iBOT + KoLeo loss of a multi-view batch (2 global views first, then local views).

        Logs the three parts (``train/dino_loss``, ``train/ibot_loss``, ``train/koleo_loss``).
        """
        h = self.hp
        global_views, local_views = batch[:2], batch[2:]
        x = torch.cat(global_views)
        masks = self.block_masks(x.shape[0], patch_grid(self.vit, (x.shape[-2], x.shape[-1])), x.device)
        flat = masks.flatten(1)
        prefix = int(self.vit.num_prefix_tokens)
        s_ibot_head, t_ibot_head = self.ibot_heads
        with torch.no_grad():
            t_tokens = self.teacher_encoder.encode(x)
            t_dino = self.teacher_head(pooled(self.teacher_vit, t_tokens)).chunk(len(global_views))
            t_ibot = t_ibot_head(t_tokens[:, prefix:][flat])
        s_tokens = self.student_encoder.encode(x, mask=token_mask(self.vit, masks))
        s_cls = pooled(self.vit, s_tokens)
        s_dino = list(self.student_head(s_cls).chunk(len(global_views)))
        if local_views:
            s_dino += list(self.student_head(self(torch.cat(local_views))).chunk(len(local_views)))
        s_ibot = s_ibot_head(s_tokens[:, prefix:][flat])
        dino = self.criterion(list(t_dino), s_dino, teacher_temp=teacher_temp)
        ibot = self.ibot_criterion(t_ibot, s_ibot, masks, teacher_temp=teacher_temp)
        koleo = self.koleo_term(s_cls, len(global_views)) if h.koleo_weight else dino.new_zeros(())
        b = global_views[0].shape[0]
        for name, value in (("dino", dino), ("ibot", ibot), ("koleo", koleo)):
            self.log(f"train/{name}_loss", value.detach(), on_step=True, on_epoch=False, batch_size=b)
        return dino + h.ibot_weight * ibot + h.koleo_weight * koleo

    # ---- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW (or the chosen optimiser) over depth groups when ``layerwise_decay`` < 1 or
        ``patch_embed_lr_mult`` != 1."""
        h = self.hp
        if h.layerwise_decay >= 1.0 and h.patch_embed_lr_mult == 1.0:
            return super().configure_optimizers()
        groups = layerwise_param_groups(
            self, h.weight_decay, float(h.layerwise_decay), len(self.vit.blocks), float(h.patch_embed_lr_mult)
        )
        return build_optimizer(h.optimizer, groups, h.lr, h.momentum)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """DINO's clipping and frozen last layer, the latter for the separate patch head too (DINOv2
        drops every ``last_layer`` gradient during ``freeze_last_layer`` epochs)."""
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if self.hp.ibot_separate_head:
            self.student_ibot_head.cancel_last_layer_gradients(self.current_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """The scheduled LR (and weight decay), times each group's ``lr_scale`` (layer-wise decay)."""
        super().on_train_batch_start(batch, batch_idx)
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * g.get("lr_scale", 1.0)
