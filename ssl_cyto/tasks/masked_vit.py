"""A timm Vision Transformer seen as a maskable token encoder, for DINOv2's iBOT loss.

:class:`lightly.models.modules.MaskedVisionTransformerTIMM` replaces masked patch tokens by a mask
token and returns every token. Its defaults re-initialise the patch embedding and overwrite the
position embedding with a fixed sine-cosine one, which would throw away pretrained weights (DINOv2's
own, for DinoBloom's recipe): :func:`wrap_vit` skips both, so the wrapped ViT keeps its weights. The
wrapper is a view, not an owner: the task keeps the ViT as ``backbone`` (so checkpoints, exports and
``checkpoint_path`` files keep timm's keys) and its mask token as its own parameter.
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.models.modules import MaskedVisionTransformerTIMM
from timm.layers import DropPath
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ssl_cyto.formats.errors import InputError

#: ViTs that work with DINOv2 (timm ``VisionTransformer`` classes), named in the refusal message.
VIT_EXAMPLES = (
    "vit_small_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_dinov2",
    "vit_small_patch16_224",
    "vit_tiny_patch16_224",
    "deit_small_patch16_224",
)


def require_vit(name: str, module: nn.Module, method: str = "dinov2") -> VisionTransformer:
    """``module`` as a timm ``VisionTransformer``, or an :class:`InputError` naming ViTs that work.

    Masked-patch losses replace patch tokens by a mask token: a CNN has no tokens to mask.
    """
    if not isinstance(module, VisionTransformer):
        raise InputError(
            f"--model {method} needs a Vision Transformer backbone (patch tokens to mask), but "
            f"model.init_args.backbone={name!r} is not a timm VisionTransformer: use one of "
            f"{', '.join(VIT_EXAMPLES)} (or another timm vit_* / deit_* name)"
        )
    return module


def wrap_vit(vit: VisionTransformer, mask_token: nn.Parameter | None = None) -> MaskedVisionTransformerTIMM:
    """lightly's maskable wrapper around ``vit`` that leaves every weight of ``vit`` as it is
    (``weight_initialization="skip"``, ``pos_embed_initialization="skip"``)."""
    return MaskedVisionTransformerTIMM(
        vit=vit,
        mask_token=mask_token,
        weight_initialization="skip",
        pos_embed_initialization="skip",
    )


def patch_grid(vit: VisionTransformer, size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the patch grid of an input of ``size`` (padding included)."""
    grid = vit.patch_embed.dynamic_feat_size(size) if vit.dynamic_img_size else vit.patch_embed.grid_size
    return int(grid[0]), int(grid[1])


def token_mask(vit: VisionTransformer, patch_masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) patch masks as the (B, prefix + H * W) token mask lightly's ``encode`` takes
    (class and register tokens never masked)."""
    b = patch_masks.shape[0]
    prefix = patch_masks.new_zeros((b, int(vit.num_prefix_tokens)))
    return torch.cat([prefix, patch_masks.reshape(b, -1)], dim=1)


def set_drop_path(vit: VisionTransformer, rate: float, uniform: bool = True) -> None:
    """Stochastic depth (Huang et al. 2016) on every residual branch of ``vit``: ``rate`` in every
    block (``uniform``, DINOv2's ``drop_path_uniform``) or rising linearly from 0 to ``rate``."""
    depth = len(vit.blocks)
    for i, block in enumerate(vit.blocks):
        p = rate if uniform or depth == 1 else rate * i / (depth - 1)
        for attr in ("drop_path1", "drop_path2"):
            if hasattr(block, attr):
                setattr(block, attr, DropPath(p) if p > 0 else nn.Identity())


def pooled(vit: VisionTransformer, tokens: torch.Tensor) -> Any:
    """The ViT's own image feature from its final tokens (class token for DINOv2's ViTs): what the
    exported backbone returns, so the DINO and KoLeo losses train the embedding that gets used."""
    return vit.forward_head(tokens, pre_logits=True)
