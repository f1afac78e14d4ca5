"""The losses of the tasks, computed in float32 under mixed precision.

Under ``bf16-mixed`` / ``16-mixed`` autocast, the matrix products inside lightly's losses (NT-Xent's
similarity matrices, DINO's teacher-student cross-entropy) would run in half precision: at
temperature 0.1 NT-Xent's gradient was 1.6e-2 off in relative terms and the DINO loss value was
rounded (issue 11). :class:`Float32Loss` turns autocast off inside the loss and casts its tensor
inputs to float32, so every matrix inside is float32; the networks before it keep running in mixed
precision. The subclasses keep lightly's state-dict keys (DINO's ``criterion.center``).
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import DINOLoss, NTXentLoss


def to_float32(value: Any) -> Any:
    """Floating tensors (also inside lists and tuples) cast to float32; everything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, list | tuple):
        return type(value)(to_float32(v) for v in value)
    return value


def _device_type(values: Any) -> str:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device.type
        if isinstance(v, list | tuple) and v:
            return _device_type(v)
    return "cpu"


class Float32Loss(torch.nn.Module):
    """Mixin for a loss module: ``forward`` runs with autocast off, on float32 inputs."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=_device_type([*args, *kwargs.values()]), enabled=False):
            return super().forward(*to_float32(args), **{k: to_float32(v) for k, v in kwargs.items()})


class NTXentLoss32(Float32Loss, NTXentLoss):
    """lightly's :class:`~lightly.loss.NTXentLoss` (Chen et al. 2020) in float32."""


class DINOLoss32(Float32Loss, DINOLoss):
    """lightly's :class:`~lightly.loss.DINOLoss` (Caron et al. 2021) in float32."""
