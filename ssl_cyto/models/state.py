"""State dicts on disk: read a local weights file into a backbone, serialise a backbone's weights.

Nothing here downloads anything: weights come from a local file only.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_cyto.formats.hashing import sha256_bytes
from ssl_cyto.formats.model_json import WEIGHTS_FILE
from ssl_cyto.models.errors import BackboneError

#: Prefixes of a backbone's weights inside a Lightning checkpoint of an SSL task, in order of preference.
CHECKPOINT_PREFIXES = ("backbone.", "student_backbone.")


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The backbone ``state_dict`` stored in a local file.

    Args:
        path: a backbone folder or its ``weights.pt``, a plain ``state_dict`` file, or a Lightning
            ``.ckpt`` (its ``backbone.*`` weights, else ``student_backbone.*``).

    Raises:
        BackboneError: a missing file or one holding no backbone weights.
    """
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.exists():
        raise BackboneError(f"checkpoint_path {p} does not exist")
    obj = torch.load(p, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj:
        sd = obj["state_dict"]
        for prefix in CHECKPOINT_PREFIXES:
            sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            if sub:
                return sub
        raise BackboneError(f"{p}: checkpoint has no 'backbone.*' or 'student_backbone.*' weights")
    if not isinstance(obj, dict):
        raise BackboneError(f"{p}: expected a state_dict or a Lightning checkpoint, got {type(obj).__name__}")
    return obj


def load_weights_into(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a local weights file (see :func:`read_state_dict`) into ``module`` strictly.

    Raises:
        BackboneError: the file is missing or its weights do not fit ``module``.
    """
    sd = read_state_dict(path)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{path}: weights do not fit this backbone: {str(exc)[:500]}") from exc


def serialize_state(module: nn.Module) -> bytes:
    """The bytes of ``weights.pt`` for ``module``: its ``state_dict`` on CPU, contiguous."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def state_sha256(module: nn.Module) -> str:
    """The ``weights_sha256`` that :func:`ssl_cyto.models.weights.save_backbone` would record."""
    return sha256_bytes(serialize_state(module))
