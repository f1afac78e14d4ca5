"""A ``--model`` spec -> a backbone, its ``model.json`` and the folder holding its weights.

A spec is one of

* an exported backbone folder (``weights.pt`` + ``model.json``) or its ``model.json`` -- used in
  place (the weights' sha256 is checked by :func:`ssl_cyto.models.weights.load_backbone_folder`);
* a training ``.ckpt`` -- its backbone (DINO: the teacher) via
  :func:`ssl_cyto.training.export.backbone_from_checkpoint`;
* released weights (``resnet18.a1_in1k``, ``hf-hub:ORG/NAME[@REVISION]``, ``local-dir:PATH``) --
  fetched through :mod:`ssl_cyto.models.hub` (huggingface_hub's cache), with the model's own input
  size and normalisation; ``model.json`` records ``source`` (name, revision, file_sha256);
* a backbone name (timm, ``tiny_cnn``, ``colour_hist``, ...) -- built with seeded random weights,
  or with the weights of a local file (``weights=FILE``, ``--weights``: safetensors or a plain
  ``state_dict``; a pickle needing more only with ``trust_weights``).

A ``.ckpt`` or a name is saved as a backbone folder (:func:`ssl_cyto.models.weights.save_backbone`),
so that what was embedded can be loaded again and its ``weights_sha256`` is the hash of the saved
``weights.pt`` whatever the spec: the one identity ``embed``, ``index build`` and ``query`` compare.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_cyto.embedding.errors import EmbedError, MissingModelError, ModelMismatchError
from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.formats.model_json import MODEL_JSON, read_model_json, write_model_json
from ssl_cyto.models import hub
from ssl_cyto.models.factory import (
    backbone_norm,
    build_backbone,
    default_input_size,
    released_arch,
    sized_kwargs,
)
from ssl_cyto.models.registry import HUB_PREFIXES, WEIGHTLESS_BACKBONES
from ssl_cyto.models.weights import load_backbone_folder, save_backbone
from ssl_cyto.training.export import backbone_from_checkpoint

__all__ = ["ModelMismatchError", "is_model_name", "load_model", "random_backbone"]


def is_model_name(spec: str | os.PathLike) -> bool:
    """Whether a ``--model`` spec is a backbone name (random or ``--weights``), not a file or folder."""
    text = str(spec)
    return not Path(text).exists() and not _looks_like_path(text)


def is_random(meta: dict[str, Any]) -> bool:
    """Whether a backbone's ``model.json`` says its weights are random (a weightless one is not)."""
    return bool(meta.get("random_init")) and meta.get("architecture") not in WEIGHTLESS_BACKBONES


def random_backbone(
    name: str,
    seed: int = 0,
    input_size: int | None = None,
    weights: str | os.PathLike | None = None,
    trust_weights: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone ``name`` with random weights drawn after ``torch.manual_seed(seed)``.

    Args:
        name: a backbone name of :func:`ssl_cyto.models.factory.build_backbone`.
        seed: the weights' seed (same seed, same weights, same ``weights_sha256``).
        input_size: input size to record (and, for a ViT, to build for); default the backbone's.
        weights: a local weights file to load instead (a ``state_dict``, a backbone folder's
            ``weights.pt`` or a Lightning ``.ckpt``); then ``random_init`` is False.
        trust_weights: allow a ``weights`` pickle that ``torch.load(weights_only=True)`` refuses.

    Returns:
        ``(module in eval mode, meta)``; meta has the ``model.json`` keys known before saving,
        ``method="random"`` and ``random_init=True`` (``method="weights-file"`` with ``weights``,
        ``method="released"`` and ``source`` for released weights).
    """
    kwargs: dict[str, Any] = sized_kwargs(name, int(input_size)) if input_size else {}
    torch.manual_seed(seed)
    if weights is not None and not Path(weights).is_file():
        raise MissingModelError(f"--weights {weights}: file not found (a state_dict saved with torch.save)")
    module, dim = build_backbone(
        name, checkpoint_path=None if weights is None else str(weights), trust_weights=trust_weights, **kwargs
    )
    mean, std = backbone_norm(name)
    released = hub.resolve(name) if hub.is_released(name) and weights is None else None
    meta = {
        "architecture": name,
        "backbone_kwargs": kwargs,
        "embed_dim": int(dim),
        "input_size": int(input_size or default_input_size(name, kwargs)),
        "mean": list(mean),
        "std": list(std),
        "method": "random" if weights is None else "weights-file",
        "config_hash": None,
        "seed": seed,
        "random_init": weights is None,
    }
    if weights is not None:
        meta["weights_source"] = str(Path(weights).resolve())
        meta["source"] = {"name": str(Path(weights).resolve()), "revision": None, "file_sha256": sha256_file(weights)}
    if released is not None:  # the folder records the timm architecture: it loads without the hub
        arch, options = released_arch(name, kwargs)
        meta.update(architecture=arch, backbone_kwargs=options, method="released", random_init=False)
        meta.update(source=released.source(), released=released.record())
    return module.eval(), meta


def _save(module: nn.Module, meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Save ``module`` as a backbone folder (replacing ``folder``); returns the written model.json."""
    if folder.exists():
        shutil.rmtree(folder)
    save_backbone(module, folder, meta)
    saved = read_model_json(folder)
    extra = {"random_init": bool(meta.get("random_init", False))}
    for key in ("checkpoint", "weights_source", "source", "released"):
        if key in meta:
            extra[key] = meta[key]
    if any(saved.get(k) != v for k, v in extra.items()):
        saved.update(extra)
        write_model_json(folder, saved)
    return saved


def _looks_like_path(spec: str) -> bool:
    if spec.startswith(HUB_PREFIXES):
        return False
    return os.sep in spec or "/" in spec or Path(spec).suffix in (".json", ".ckpt", ".pt")


def load_model(
    spec: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    input_size: int | None = None,
    weights: str | os.PathLike | None = None,
    trust_weights: bool = False,
) -> tuple[nn.Module, dict[str, Any], Path | None]:
    """Load the backbone a ``--model`` spec names (see the module docstring).

    Args:
        spec: a backbone folder, its ``model.json``, a ``.ckpt`` or a backbone name.
        out_dir: where a ``.ckpt``'s backbone or a name's random weights are saved (this folder is
            replaced); ``None`` saves them into a temporary folder that is removed again.
        seed: seed of the random weights when ``spec`` is a name.
        input_size: input size for a name; refused for a path (it records its own).
        weights: a local weights file for a name (instead of random weights); refused for a path.
        trust_weights: allow a ``weights`` pickle that ``torch.load(weights_only=True)`` refuses.

    Returns:
        ``(module in eval mode on the CPU, model.json dict, folder holding weights.pt + model.json)``;
        the folder is ``None`` when ``out_dir`` is ``None`` and the weights were not already a folder.

    Raises:
        MissingModelError: a path that does not exist.
        EmbedError: ``input_size`` given with a path.
        BackboneError / ExportError: an unknown name, weights that do not fit, a bad checkpoint.
    """
    text = str(spec)
    path = Path(text)
    if input_size is not None and path.exists():
        raise EmbedError(
            f"--input-size applies to a model given by name only; {text} records its own input size"
        )
    if weights is not None and not is_model_name(text):
        raise EmbedError(f"--weights applies to a model given by name only; {text} holds its own weights")
    if path.suffix == ".ckpt" and not path.is_file():
        raise MissingModelError(
            f"--model {text}: checkpoint not found (check the path or train with `ssl-cyto fit`)"
        )
    if path.suffix != ".ckpt" and (path.is_dir() or path.name == MODEL_JSON):
        folder = path if path.is_dir() else path.parent
        module, meta = load_backbone_folder(folder)
        return module.eval(), dict(meta), folder.resolve()
    if path.suffix != ".ckpt" and path.exists():
        raise EmbedError(f"--model {text}: not a backbone folder, model.json or .ckpt")
    if path.suffix != ".ckpt" and _looks_like_path(text):
        raise MissingModelError(
            f"--model {text} not found: give a backbone folder (`ssl-cyto export`), its model.json, a .ckpt "
            "or a backbone name such as tiny_cnn or resnet50"
        )
    if path.suffix == ".ckpt":
        module, meta = backbone_from_checkpoint(path)
    else:
        module, meta = random_backbone(
            text, seed=seed, input_size=input_size, weights=weights, trust_weights=trust_weights
        )
    if out_dir is not None:
        folder = Path(out_dir)
        return module.eval(), _save(module, meta, folder), folder.resolve()
    with tempfile.TemporaryDirectory(prefix="ssl-cyto-model-") as tmp:
        saved = _save(module, meta, Path(tmp) / "backbone")
    return module.eval(), saved, None
