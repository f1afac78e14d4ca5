"""State dicts on disk: read a local weights file into a backbone, serialise a backbone's weights.

Nothing here downloads anything: weights come from a local file only. A file is read as safetensors
(``.safetensors``) or with ``torch.load(weights_only=True)``; a pickle that needs more (arbitrary
objects, which ``torch.load`` would run) is refused unless ``trust=True`` (``--trust-weights``).
Every load is strict: keys are mapped by timm's own converter of the architecture where it has one
(DINOv2's ``mask_token`` dropped, position embeddings resampled, ...), a classifier head absent from
the backbone is dropped, and any other key that does not map is refused by name.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_cyto.formats.hashing import sha256_bytes
from ssl_cyto.formats.model_json import WEIGHTS_FILE
from ssl_cyto.models.errors import BackboneError

#: Prefixes of a backbone's weights inside a Lightning checkpoint of an SSL task, in order of preference.
CHECKPOINT_PREFIXES = ("backbone.", "student_backbone.")
#: Classifier heads a released checkpoint may carry and a backbone (``num_classes=0``) does not.
CLASSIFIER_NAMES = ("head", "fc", "classifier", "last_linear", "head_dist")


def load_file(path: str | os.PathLike, trust: bool = False) -> Any:
    """The object in a weights file: safetensors, else ``torch.load(weights_only=True)``.

    Raises:
        BackboneError: the file is unreadable, or is a pickle needing ``weights_only=False`` and not ``trust``.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(str(p), device="cpu")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise BackboneError(
                f"{p}: this pickle holds more than tensors (torch.load(weights_only=True) refuses it: "
                f"{str(exc).splitlines()[0][:160]}); loading it would run code from the file. Save a plain "
                "state_dict or safetensors, or pass `ssl-cyto embed --trust-weights` if you trust its origin"
            ) from exc
        return torch.load(p, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError) as exc:
        raise BackboneError(f"{p}: not a readable weights file ({type(exc).__name__}: {exc})") from exc


def read_state_dict(path: str | os.PathLike, trust: bool = False) -> dict[str, Any]:
    """The backbone ``state_dict`` stored in a local file.

    Args:
        path: a backbone folder or its ``weights.pt``, a plain ``state_dict`` file (``torch.save`` or
            ``.safetensors``), or a Lightning ``.ckpt`` (its ``backbone.*`` weights, else
            ``student_backbone.*``).
        trust: allow a pickle that ``torch.load(weights_only=True)`` refuses.

    Raises:
        BackboneError: a missing file, one holding no backbone weights, or an untrusted pickle.
    """
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.exists():
        raise BackboneError(f"checkpoint_path {p} does not exist")
    obj = load_file(p, trust)
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


def load_weights_into(module: nn.Module, path: str | os.PathLike, trust: bool = False) -> None:
    """Load a local weights file (see :func:`read_state_dict`) into ``module``, every key mapped.

    Raises:
        BackboneError: the file is missing or untrusted, or its weights do not fit ``module``.
    """
    load_state_strict(module, read_state_dict(path, trust), str(path))


def _timm_mapped(module: nn.Module, sd: dict[str, Any]) -> dict[str, Any]:
    """``sd`` through timm's converter for ``module``'s architecture (where it has one and it is needed:
    keys that differ, or shapes, e.g. DINOv2's 518 px position embedding resampled for a 224 px ViT)."""
    own = module.state_dict()
    if set(sd) == set(own) and all(tuple(getattr(v, "shape", ())) == tuple(own[k].shape) for k, v in sd.items()):
        return sd
    convert = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    if convert is None or not type(module).__module__.startswith("timm."):
        return sd
    try:
        return dict(convert(dict(sd), module))
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError):
        return sd  # the strict check below names what does not map


def load_state_strict(module: nn.Module, sd: dict[str, Any], where: str) -> None:
    """Load ``sd`` into ``module``: timm's key mapping, classifier dropped, then every key must map.

    Raises:
        BackboneError: keys that do not map (named, with their counts) or shapes that differ.
    """
    sd = _timm_mapped(module, sd)
    own = module.state_dict()
    heads = [k for k in sd if k not in own and k.split(".")[0] in CLASSIFIER_NAMES]
    sd = {k: v for k, v in sd.items() if k not in heads}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise BackboneError(
            f"{where}: {len(own) - len(missing)} of {len(own)} backbone tensors map; missing {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''} (DINOv2-style keys such as ls1.gamma / mask_token "
            "load into a timm ViT with init_values; check the architecture)"
        )
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{where}: weights do not fit this backbone: {str(exc)[:500]}") from exc


def serialize_state(module: nn.Module) -> bytes:
    """The bytes of ``weights.pt`` for ``module``: its ``state_dict`` on CPU, contiguous."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def state_sha256(module: nn.Module) -> str:
    """The ``weights_sha256`` that :func:`ssl_cyto.models.weights.save_backbone` would record."""
    return sha256_bytes(serialize_state(module))
