"""The optimiser of the SSL tasks: LARS, AdamW or SGD over two parameter groups.

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
