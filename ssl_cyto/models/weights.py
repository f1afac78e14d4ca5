"""Backbone folders: save a backbone as ``weights.pt`` + ``model.json``, load one back, and the
evaluation transform its ``model.json`` describes.

``weights_sha256`` in ``model.json`` is the SHA-256 of the bytes of ``weights.pt``
(:func:`ssl_cyto.models.state.state_sha256` gives the same hash for a module not yet saved), so a
folder whose weights were changed or mixed with another export is refused on load. The keys are
those of :data:`ssl_cyto.formats.model_json.MODEL_JSON_KEYS`.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_cyto.formats.hashing import sha256_bytes
from ssl_cyto.formats.model_json import (
    MODEL_JSON,
    MODEL_JSON_VERSION,
    WEIGHTS_FILE,
    read_model_json,
    write_model_json,
)
from ssl_cyto.formats.provenance import git_commit, package_versions
from ssl_cyto.models import hub
from ssl_cyto.models.errors import BackboneError
from ssl_cyto.models.factory import backbone_norm, build_backbone, default_input_size
from ssl_cyto.models.state import load_state_strict, load_weights_into, serialize_state
from ssl_cyto.transforms import EvalTransform

__all__ = ["eval_transform_from_meta", "load_backbone_folder", "load_weights_into", "save_backbone"]

_REQUIRED = ("architecture", "weights_file", "weights_sha256")


def save_backbone(module: nn.Module, out_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``out_dir``; returns ``out_dir``.

    Args:
        module: the backbone (its ``state_dict`` is saved, on CPU).
        out_dir: folder to write (created).
        meta: at least ``architecture``; ``backbone_kwargs``, ``embed_dim``, ``input_size``, ``mean``,
            ``std``, ``method``, ``config_hash``, ``seed``, ``git_commit`` and ``package_versions`` are
            copied when given (``embed_dim``, ``input_size``, ``mean``/``std`` and the provenance get
            defaults), and ``source`` (where the starting weights came from: ``name``, ``revision``,
            ``file_sha256``; None for weights trained from random) and ``released`` (the record of
            :class:`ssl_cyto.models.hub.Released`). ``weights_file``, ``weights_sha256``,
            ``format_version`` and ``created`` are filled in here.

    Raises:
        BackboneError: ``meta`` has no ``architecture``.
    """
    if "architecture" not in meta:
        raise BackboneError("save_backbone: meta needs 'architecture' (the name given to build_backbone)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = serialize_state(module)
    (out / WEIGHTS_FILE).write_bytes(data)
    arch = str(meta["architecture"])
    kwargs = dict(meta.get("backbone_kwargs") or {})
    mean, std = backbone_norm(arch)
    embed_dim = meta.get("embed_dim")
    if embed_dim is None:
        embed_dim = getattr(module, "num_features", None)
    record = {
        "architecture": arch,
        "backbone_kwargs": kwargs,
        "embed_dim": int(embed_dim) if embed_dim is not None else None,
        "input_size": int(meta.get("input_size") or default_input_size(arch, kwargs)),
        "mean": list(meta.get("mean") or mean),
        "std": list(meta.get("std") or std),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_bytes(data),
        "method": meta.get("method"),
        "config_hash": meta.get("config_hash"),
        "seed": meta.get("seed"),
        "git_commit": meta.get("git_commit") or git_commit(),
        "package_versions": meta.get("package_versions") or package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format_version": MODEL_JSON_VERSION,
        "source": meta.get("source"),
    }
    if meta.get("released"):
        record["released"] = meta["released"]
    write_model_json(out, record)
    return out


def load_backbone_folder(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a backbone folder (``weights.pt`` + ``model.json``) or its ``model.json``.

    Args:
        path: the folder or its ``model.json``.
        device: where the module is put.

    Returns:
        ``(module in eval mode, meta)``; meta is the folder's ``model.json``.

    Raises:
        BackboneError: no ``model.json``, missing keys, a missing weights file, or weights whose
            SHA-256 differs from the one ``model.json`` records.
    """
    p = Path(path)
    folder = p.parent if p.name == MODEL_JSON else p
    mj = folder / MODEL_JSON
    if not mj.is_file():
        raise BackboneError(f"{folder} is not a backbone folder: model.json missing (run `ssl-cyto export`)")
    meta = read_model_json(mj)
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise BackboneError(f"{mj}: missing keys {missing}")
    wfile = folder / str(meta["weights_file"])
    if not wfile.is_file():
        raise BackboneError(f"{mj}: weights file {wfile} not found")
    data = wfile.read_bytes()
    digest = sha256_bytes(data)
    if digest != meta["weights_sha256"]:
        raise BackboneError(
            f"{wfile}: sha256 {digest[:12]}... differs from model.json ({str(meta['weights_sha256'])[:12]}...); "
            "the weights were changed or the folder mixes two exports"
        )
    if isinstance(meta.get("released"), dict):
        hub.remember(meta["released"])  # an architecture given by a released name: no hub needed
    kwargs = dict(meta.get("backbone_kwargs") or {})
    module, _ = build_backbone(str(meta["architecture"]), pretrained=False, **kwargs)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    load_state_strict(module, state, str(wfile))
    return module.to(device).eval(), meta


def eval_transform_from_meta(meta: dict[str, Any]) -> EvalTransform:
    """The evaluation transform of a backbone: resize shorter side, centre crop to ``input_size``,
    normalise with the recorded ``mean``/``std`` (PIL RGB -> float Tensor (3, S, S)).

    Raises:
        BackboneError: ``meta`` lacks ``input_size``, ``mean`` or ``std``.
    """
    for key in ("input_size", "mean", "std"):
        if key not in meta:
            raise BackboneError(f"model meta lacks {key!r}; re-export the backbone with `ssl-cyto export`")
    return EvalTransform(int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]))
