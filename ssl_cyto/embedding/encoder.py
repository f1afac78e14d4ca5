"""The one encoder path: images -> embeddings, for ``embed``, ``query`` and ``serve`` alike.

An :class:`Encoder` holds a backbone loaded from a ``--model`` spec
(:func:`ssl_cyto.embedding.model_spec.load_model`), its ``model.json``, the evaluation transform that
``model.json`` describes (resize shorter side, centre crop, normalise:
:func:`ssl_cyto.models.weights.eval_transform_from_meta`), the device (:func:`resolve_device`) and the
forward pass: ``torch.no_grad()``, automatic mixed precision on CUDA (bfloat16 where supported, else
float16), features stored as float32. :meth:`Encoder.check` is the one weights check: a model whose
``weights_sha256`` differs from the one an embedding folder or index records is refused with
:class:`~ssl_cyto.embedding.errors.ModelMismatchError`. So the vector of an uploaded image in
``serve``, of a query image in ``query`` and of the same file in ``embed`` are the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_cyto.embedding.errors import EmbedError, ModelMismatchError
from ssl_cyto.embedding.model_spec import load_model
from ssl_cyto.models.weights import eval_transform_from_meta

__all__ = ["QUERY_BATCH", "Encoder", "autocast_dtype", "resolve_device"]

QUERY_BATCH = 64


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; checks ``cpu`` / ``cuda`` / ``cuda:N``.

    Raises:
        EmbedError: CUDA asked for and not available, or an unknown device.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EmbedError(f"--device {device}: CUDA is not available here; use `ssl-cyto embed --device cpu` (query and serve take it too) or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise EmbedError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def autocast_dtype(dev: str) -> torch.dtype | None:
    """The mixed-precision dtype of a device (None on CPU: float32)."""
    if not dev.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Encoder:
    """A backbone ready to embed images (see the module docstring)."""

    module: nn.Module
    meta: dict[str, Any]
    device: str
    spec: str = ""
    folder: Path | None = None

    def __post_init__(self) -> None:
        self.module = self.module.to(self.device).eval()
        self.transform = eval_transform_from_meta(self.meta)
        self.amp = autocast_dtype(self.device)

    @classmethod
    def load(
        cls,
        spec: str | os.PathLike,
        *,
        device: str = "auto",
        out_dir: str | os.PathLike | None = None,
        seed: int = 0,
        input_size: int | None = None,
        weights: str | os.PathLike | None = None,
        trust_weights: bool = False,
    ) -> Encoder:
        """Load the backbone a ``--model`` spec names (see :func:`ssl_cyto.embedding.model_spec.load_model`)."""
        dev = resolve_device(device)
        module, meta, folder = load_model(
            spec, out_dir, seed=seed, input_size=input_size, weights=weights, trust_weights=trust_weights
        )
        return cls(module, dict(meta), dev, str(spec), folder)

    @property
    def weights_sha256(self) -> str | None:
        """The ``weights_sha256`` of the loaded backbone (its saved ``weights.pt``)."""
        value = self.meta.get("weights_sha256")
        return None if value is None else str(value)

    def check(self, expected: str | None, where: str) -> None:
        """Refuse a model that is not the one ``where`` (an index, an embedding folder) was embedded with.

        Raises:
            ModelMismatchError: ``expected`` is empty or differs from :attr:`weights_sha256`.
        """
        if not expected:
            raise ModelMismatchError(
                f"{where}: records no model weights sha256; rebuild it with `ssl-cyto index build` over a "
                "folder written by `ssl-cyto embed`"
            )
        got = str(self.weights_sha256)
        if got != expected:
            raise ModelMismatchError(
                f"model {self.spec} (weights sha256 {got[:12]}...) is not the model of this index "
                f"({where}: {self.meta.get('architecture')}, sha256 {str(expected)[:12]}...); query with the "
                "model that embedded the cells (omit --model to use it) or re-embed and rebuild the index"
            )

    def forward(self, images: torch.Tensor) -> np.ndarray:
        """Features of a batch of transformed images ``(B, 3, S, S)``: ``(B, D)`` float32.

        Raises:
            EmbedError: the backbone does not return ``(B, D)``.
        """
        x = images.to(self.device, non_blocking=True)
        with (
            torch.no_grad(),
            torch.autocast(device_type="cuda", dtype=self.amp or torch.float16, enabled=self.amp is not None),
        ):
            f = self.module(x)
        out = f.float().cpu().numpy()
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise EmbedError(f"the backbone returned features of shape {tuple(out.shape)}; expected (B, D)")
        return out.astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[Any], batch_size: int = QUERY_BATCH) -> np.ndarray:
        """Features of PIL RGB images, in order: ``(N, D)`` float32."""
        out = [
            self.forward(torch.stack([self.transform(img) for img in images[start : start + batch_size]]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float32)
