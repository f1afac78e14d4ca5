"""The backbone of a training checkpoint, with its ``model.json`` (``ssl-cyto export``).

The task is rebuilt from the checkpoint's hyper-parameters (the class is recorded by ``ssl-cyto fit``
under ``checkpoint["ssl_cyto"]["task_class"]``, or by LightningCLI as ``hyper_parameters["_class_path"]``),
its weights are loaded strictly, and ``task.export_backbone()`` is written with
:func:`ssl_cyto.models.weights.save_backbone` (for DINO that is the teacher, the network DINO evaluates).

``model.json`` records the architecture and its kwargs, embedding dim, input size, mean/std, the weights'
SHA-256, the method, the hash of the full training config, the seed, the git commit the run was trained
from, and package versions. Checkpoints written before the layered redesign (class paths
``ssl_cyto.tasks.SimCLR`` / ``ssl_cyto.tasks.DINO``) load as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.cli import instantiate_module
from torch import nn

from ssl_cyto.formats.errors import InputError
from ssl_cyto.formats.imports import import_object
from ssl_cyto.models.weights import save_backbone

__all__ = ["ExportError", "backbone_from_checkpoint", "export_checkpoint", "load_checkpoint", "task_from_checkpoint"]


class ExportError(InputError):
    """A checkpoint that cannot be exported (the message names the file and the fix)."""


def _import_class(path: str) -> type:
    try:
        cls: type = import_object(path)
    except InputError as exc:
        raise ExportError(f"cannot import the task class {path!r} recorded in the checkpoint: {exc}") from exc
    return cls


def load_checkpoint(ckpt: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint on CPU (clear errors for a missing or unreadable file)."""
    path = Path(ckpt)
    if not path.is_file():
        raise ExportError(
            f"checkpoint {path} does not exist (expected e.g. runs/<name>/checkpoints/last.ckpt)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a truncated/foreign file
        raise ExportError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise ExportError(
            f"{path}: not a Lightning checkpoint (no 'state_dict'); for a backbone folder use it directly"
        )
    return obj


def task_from_checkpoint(ckpt: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the :class:`ssl_cyto.tasks.SSLTask` of a checkpoint with its trained weights.

    Returns:
        ``(task in eval mode, checkpoint dict)``.
    """
    obj = load_checkpoint(ckpt)
    info = dict(obj.get("ssl_cyto") or {})
    hparams = dict(obj.get("hyper_parameters") or {})
    class_path = info.get("task_class") or hparams.get("_class_path")
    if not class_path:
        raise ExportError(
            f"{ckpt}: the checkpoint does not say which task it holds (no ssl_cyto.task_class, no _class_path); "
            "it was not written by `ssl-cyto fit` or a LightningCLI run"
        )
    cls = _import_class(str(class_path))
    from_cli = "_instantiator" in hparams
    hparams.pop("_instantiator", None)
    hparams.pop("_class_path", None)
    task: Any
    try:
        task = instantiate_module(cls, {"_class_path": class_path, **hparams}) if from_cli else cls(**hparams)
    except Exception as exc:
        raise ExportError(f"{ckpt}: cannot rebuild {class_path} from its hyper-parameters: {exc}") from exc
    missing, unexpected = task.load_state_dict(obj["state_dict"], strict=False)
    if missing or unexpected:
        raise ExportError(
            f"{ckpt}: weights do not fit {class_path} (missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})"
        )
    return task.eval(), obj


def _task_meta(task: Any, info: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """The model.json fields the task knows (backbone name/kwargs, dim, input size, normalisation)."""
    meta: dict[str, Any] = {}
    if hasattr(task, "export_meta"):
        meta.update(task.export_meta())
    for key, attrs in {
        "architecture": ("backbone_name", "architecture"),
        "backbone_kwargs": ("backbone_kwargs",),
        "embed_dim": ("embed_dim", "feature_dim"),
        "input_size": ("input_size", "image_size", "crop_size"),
        "mean": ("mean",),
        "std": ("std",),
    }.items():
        if meta.get(key) is not None:
            continue
        for attr in attrs:
            value = getattr(task, attr, None)
            if value is None:
                value = hparams.get(attr)
            if value is not None:
                meta[key] = value
                break
    if "architecture" not in meta and "backbone" in hparams and isinstance(hparams["backbone"], str):
        meta["architecture"] = hparams["backbone"]
    if "architecture" not in meta:
        raise ExportError(
            f"cannot tell the backbone architecture of {type(task).__name__} (no backbone_name)"
        )
    for key in ("mean", "std"):
        if key in meta:
            meta[key] = [float(v) for v in meta[key]]
    if isinstance(meta.get("input_size"), (list, tuple)):
        meta["input_size"] = int(meta["input_size"][-1])
    meta["method"] = meta.get("method") or info.get("method") or type(task).__name__.lower()
    meta["config_hash"] = info.get("config_hash")
    meta["seed"] = info.get("seed")
    if info.get("git_commit"):
        meta["git_commit"] = info["git_commit"]
    return meta


def backbone_from_checkpoint(ckpt: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The exported backbone of a checkpoint (DINO: the teacher) and its model.json fields.

    Args:
        ckpt: a ``.ckpt`` written by ``ssl-cyto fit``.

    Returns:
        ``(backbone in eval mode, meta)``; meta has the model.json keys except the weights' file/hash.

    Raises:
        ExportError: missing/unreadable file, unknown task class, weights that do not fit.
    """
    task, obj = task_from_checkpoint(ckpt)
    module = task.export_backbone()
    meta = _task_meta(task, dict(obj.get("ssl_cyto") or {}), dict(obj.get("hyper_parameters") or {}))
    meta["global_step"] = int(obj.get("global_step", 0))
    meta["checkpoint"] = str(Path(ckpt).resolve())
    return module.eval(), meta


def export_checkpoint(ckpt: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir/weights.pt`` + ``out_dir/model.json`` from a training checkpoint; returns ``out_dir``.

    Raises:
        ExportError: see :func:`backbone_from_checkpoint`.
    """
    module, meta = backbone_from_checkpoint(ckpt)
    return save_backbone(module, out_dir, meta)
