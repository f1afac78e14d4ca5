"""The optimiser of the SSL tasks: LARS, AdamW or SGD over two parameter groups (or, for a ViT,
over groups by depth with layer-wise LR decay: :func:`layerwise_param_groups`).

Weights are decayed; biases and normalisation parameters are not (lightly's
:func:`~lightly.models.utils.get_weight_decay_parameters`). LARS also skips its trust ratio for the
group without weight decay.
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from torch import nn

OPTIMIZERS = ("lars", "adamw", "sgd")


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters of ``module`` in two groups: with weight decay and without (biases, norms)."""
    decay, no_decay = get_weight_decay_parameters([module])
    return [
        {"params": [p for p in decay if p.requires_grad], "weight_decay": weight_decay},
        {"params": [p for p in no_decay if p.requires_grad], "weight_decay": 0.0},
    ]


def build_optimizer(
    name: str, groups: list[dict[str, Any]], lr: float, momentum: float
) -> torch.optim.Optimizer:
    """``lars`` (large batches; lightly's LARS), ``adamw`` or ``sgd`` over ``groups``.

    Raises:
        ValueError: an unknown optimiser name.
    """
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def vit_layer_id(name: str, n_blocks: int, backbone_prefix: str = "backbone.") -> int:
    """The depth of a parameter for layer-wise LR decay (DINOv2's ``get_vit_lr_decay_rate``): 0 for the
    backbone's embeddings and tokens, ``i + 1`` for block ``i``, ``n_blocks + 1`` for everything after
    (final norm, heads)."""
    if name.startswith(backbone_prefix):
        rest = name[len(backbone_prefix) :]
        if rest.startswith(("pos_embed", "patch_embed", "cls_token", "reg_token", "mask_token")):
            return 0
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
    elif name == "mask_token":
        return 0
    return n_blocks + 1


def layerwise_param_groups(
    module: nn.Module,
    weight_decay: float,
    decay_rate: float,
    n_blocks: int,
    patch_embed_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """:func:`param_groups` split by depth, each group with an ``lr_scale`` for the task to apply.

    Layer-wise LR decay (Clark et al. 2020, ELECTRA; BEiT; DINOv2): a parameter at depth ``l`` of
    ``n_blocks + 1`` learns at ``decay_rate ** (n_blocks + 1 - l)`` of the LR, so the embeddings
    move least; ``patch_embed_lr_mult`` scales the patch embedding further (DINOv2: 0.2).
    """
    decay, _ = get_weight_decay_parameters([module])
    decayed = {id(p) for p in decay}
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        scale = decay_rate ** (n_blocks + 1 - vit_layer_id(name, n_blocks))
        if ".patch_embed." in f".{name}":
            scale *= patch_embed_lr_mult
        wd = id(p) in decayed
        group = groups.setdefault(
            (scale, wd), {"params": [], "weight_decay": weight_decay if wd else 0.0, "lr_scale": scale}
        )
        group["params"].append(p)
    return list(groups.values())
