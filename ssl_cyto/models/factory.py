"""Build a backbone by name, and what a backbone expects: normalisation, input size, ViT or not.

Every backbone maps a batch of normalised RGB images ``(B, 3, H, W)`` to features ``(B, D)``.
A plain architecture name starts from random weights or from a local file (``checkpoint_path``); a
name with released weights (``resnet18.a1_in1k``, ``hf-hub:ORG/NAME[@REV]``, ``local-dir:PATH``) is
resolved by :mod:`ssl_cyto.models.hub` and built with the architecture's saved arguments, its
normalisation and input size, and the released weights (every key mapped; see
:func:`ssl_cyto.models.state.load_state_strict`).

Whether a backbone is a ViT is asked of timm, in one place (:func:`is_vit`): a model whose timm
``pretrained_cfg`` has ``fixed_input_size`` (ViT, DeiT, EVA-02, BEiT, Swin, ... - position
embeddings or windows made for one image size). Such a model is built for the task's ``img_size``
and, where its class supports it, with ``dynamic_img_size`` (and ``dynamic_img_pad``) so that
DINO's smaller local crops fit; :func:`takes_any_size` says whether the built model accepts them.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import timm
from torch import nn

from ssl_cyto.formats.imports import import_object
from ssl_cyto.models import hub
from ssl_cyto.models.errors import BackboneError
from ssl_cyto.models.pooling import MultiScalePool
from ssl_cyto.models.registry import BACKBONES, IDENTITY_NORM_BACKBONES
from ssl_cyto.models.state import load_state_strict, load_weights_into, read_state_dict
from ssl_cyto.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "POOL_CHOICES",
    "BackboneError",
    "backbone_norm",
    "build_backbone",
    "default_input_size",
    "is_vit",
    "patch_size_of",
    "released_arch",
    "sized_kwargs",
    "takes_any_size",
]

POOL_CHOICES = ("avg", "multiscale")
#: Input size of a backbone that records none and is not a ViT: 96 px keeps nucleus texture and
#: granules of a ~360 px PBC/AML cell crop while staying cheap on CPU (GPU configs usually set 224).
DEFAULT_CNN_INPUT = 96
#: Options given to a fixed-input-size timm model unless set, each dropped for a class without it.
_DYNAMIC_DEFAULTS = ("dynamic_img_size", "dynamic_img_pad")


def backbone_norm(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) a backbone expects its inputs normalised with.

    ImageNet statistics for every learned backbone (the usual convention; stain colours are kept,
    only shifted and scaled), identity for the colour-histogram baseline which bins raw pixels.
    """
    if name in IDENTITY_NORM_BACKBONES:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if hub.is_released(name):
        rel = hub.resolve(name, weights=False)
        mean, std = rel.mean, rel.std
        return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])
    return IMAGENET_MEAN, IMAGENET_STD


def _timm_cfg(name: str) -> Any:
    """timm's pretrained config of a model name (None for the registry's own or unknown names); for
    released weights their own config (fetched config.json, or timm's for a tag)."""
    if hub.is_released(name):
        rel = hub.resolve(name, weights=False)
        return _Cfg(rel.fixed_input_size, (3, rel.input_size, rel.input_size))
    return _plain_cfg(name)


@cache
def _plain_cfg(name: str) -> Any:
    if name in BACKBONES or not timm.is_model(name):
        return None
    return timm.models.get_pretrained_cfg(name)


class _Cfg:
    def __init__(self, fixed_input_size: bool, input_size: tuple[int, int, int]) -> None:
        self.fixed_input_size = fixed_input_size
        self.input_size = input_size


def patch_size_of(module: nn.Module) -> int | None:
    """The patch size of a ViT backbone (None for a CNN)."""
    patch = getattr(getattr(module, "patch_embed", None), "patch_size", None)
    if patch is None:
        return None
    return int(patch[0] if isinstance(patch, (tuple, list)) else patch)


def is_vit(name: str) -> bool:
    """Whether ``name`` is a timm model made for one input size (ViT, DeiT, EVA-02, BEiT, Swin, ...).

    The answer is timm's: ``pretrained_cfg.fixed_input_size``. Such a model is built for an
    ``img_size`` (see :func:`sized_kwargs`) and cannot be multi-scale pooled.
    """
    cfg = _timm_cfg(name)
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def default_input_size(name: str, backbone_kwargs: dict[str, Any] | None = None) -> int:
    """A sensible input size: ``img_size`` when given, a ViT's own (timm's config, 224 for most),
    else :data:`DEFAULT_CNN_INPUT` (96 px)."""
    kwargs = backbone_kwargs or {}
    if "img_size" in kwargs:
        return int(kwargs["img_size"])
    if is_vit(name):
        return int(_timm_cfg(name).input_size[-1])
    return DEFAULT_CNN_INPUT


def sized_kwargs(name: str, input_size: int, backbone_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``backbone_kwargs`` with ``img_size=input_size`` added for a ViT (an explicit one is kept)."""
    kwargs = dict(backbone_kwargs or {})
    if is_vit(name):
        kwargs.setdefault("img_size", int(input_size))
    return kwargs


def takes_any_size(name: str, module: nn.Module) -> bool:
    """Whether the built backbone accepts inputs of any size (CNNs; ViTs with ``dynamic_img_size``).

    BEiT, for one, has no ``dynamic_img_size`` in timm: it takes its ``img_size`` only.
    """
    return not is_vit(name) or bool(getattr(module, "dynamic_img_size", False))


def build_backbone(
    name: str,
    *,
    checkpoint_path: str | None = None,
    pool: str = "avg",
    pool_stages: int = 3,
    pretrained: bool = True,
    trust_weights: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, int]:
    """Build a feature extractor ``(B, 3, H, W) -> (B, D)`` by name.

    Args:
        name: a name of :data:`ssl_cyto.models.registry.BACKBONES` (``tiny_cnn``, ``colour_hist``
            - the colour-histogram floor, expecting [0, 1] pixels), a timm model name
            (``resnet18``, ``resnet50``, ``vit_small_patch16_224``, ``deit_tiny_patch16_224``, ...) or
            released weights (``resnet18.a1_in1k``, ``hf-hub:ORG/NAME[@REV]``, ``local-dir:PATH``).
        checkpoint_path: optional local file to start from: a ``weights.pt``/backbone folder written by
            :func:`ssl_cyto.models.weights.save_backbone`, a plain ``state_dict`` or ``.safetensors``,
            or a Lightning ``.ckpt`` (its ``backbone.*`` weights, else ``student_backbone.*``).
        pool: ``"avg"`` (timm's global pooling) or ``"multiscale"`` (CNNs only: concatenate the
            global-average-pooled features of the last ``pool_stages`` stages).
        pool_stages: stages pooled with ``pool="multiscale"``.
        **kwargs: passed to the model: ``tiny_cnn`` takes ``width`` and ``depth``; timm models take
            their own options (``img_size`` for ViTs; ``dynamic_img_size``/``dynamic_img_pad``
            default to True for ViTs whose class has them, so DINO's local crops fit).
        pretrained: for released weights, load them (False: the architecture only, e.g. when a
            checkpoint's weights are loaded next; the hub is not asked when the name is remembered).
        trust_weights: allow a ``checkpoint_path`` pickle that ``torch.load(weights_only=True)`` refuses.

    Returns:
        ``(module, embed_dim)``.

    Raises:
        BackboneError: unknown name, bad option, or a checkpoint that does not fit;
            :class:`ssl_cyto.models.hub.HubUnavailableError` for released weights that cannot be had.
    """
    if pool not in POOL_CHOICES:
        raise BackboneError(f"pool must be one of {POOL_CHOICES}, got {pool!r}")
    if hub.is_released(name):
        return _build_released(name, pool, pool_stages, pretrained and not checkpoint_path, kwargs)
    if name in BACKBONES:
        module, dim = _build_registered(name, pool, pool_stages, kwargs)
    else:
        module, dim = _build_timm(name, pool, pool_stages, kwargs)
    if checkpoint_path:
        load_weights_into(module, checkpoint_path, trust=trust_weights)
    return module, dim


def released_arch(name: str, kwargs: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(timm architecture, its options)`` of released weights: the saved arguments, ``kwargs`` on
    top, ``img_size`` for a ViT. A backbone folder records these, so it loads without the hub."""
    rel = hub.resolve(name, weights=False)
    options = {k: v for k, v in rel.model_args.items() if k not in ("num_classes", "pretrained_cfg")}
    options.update(kwargs or {})
    if rel.fixed_input_size:
        options.setdefault("img_size", rel.input_size)
    return rel.architecture, options


def _build_released(
    name: str, pool: str, pool_stages: int, load: bool, kwargs: dict[str, Any]
) -> tuple[nn.Module, int]:
    """The architecture of released weights with its saved arguments, and the weights when ``load``."""
    rel = hub.resolve(name, weights=load)
    arch, options = released_arch(name, kwargs)
    module, dim = _build_timm(arch, pool, pool_stages, options)
    if load and rel.weights_file:
        load_state_strict(module, read_state_dict(rel.weights_file), name)
    return module, dim


def _build_registered(
    name: str, pool: str, pool_stages: int, kwargs: dict[str, Any]
) -> tuple[nn.Module, int]:
    cls = import_object(BACKBONES[name])
    params = inspect.signature(cls).parameters
    pooled = "pool" in params
    allowed = {p for p in params if p not in ("pool", "pool_stages")}
    extra = set(kwargs) - allowed
    if extra:
        also = " (and pool, pool_stages)" if pooled else ""
        raise BackboneError(f"{name} takes only {sorted(allowed)}{also}; got {sorted(extra)}")
    options = dict(kwargs, pool=pool, pool_stages=pool_stages) if pooled else dict(kwargs)
    module = cls(**options)
    return module, int(module.num_features)


def _create_timm(name: str, kwargs: dict[str, Any], **extra: Any) -> Any:
    """``timm.create_model`` with the dynamic-size defaults of a ViT, dropping each one the model
    class rejects (timm raises ``TypeError`` for an unknown option before building anything)."""
    options = dict(kwargs)
    defaults = [k for k in _DYNAMIC_DEFAULTS if k not in options] if is_vit(name) else []
    for key in defaults:
        options[key] = True
    while True:
        try:
            return timm.create_model(name, pretrained=False, **options, **extra)
        except TypeError as exc:
            rejected = [k for k in defaults if k in str(exc)]
            if not rejected:
                raise BackboneError(f"bad backbone_kwargs for {name!r}: {exc}") from exc
            for key in rejected:
                options.pop(key)
                defaults.remove(key)


def _build_timm(name: str, pool: str, pool_stages: int, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    if not timm.is_model(name):
        raise BackboneError(
            f"unknown backbone {name!r}: use a timm model name (e.g. resnet18, resnet50, "
            f"vit_small_patch16_224, vit_tiny_patch16_224) or one of {sorted(BACKBONES)}"
        )
    if pool == "multiscale":
        if is_vit(name):
            raise BackboneError(f"pool='multiscale' works for CNNs only, not {name!r}; use pool='avg'")
        probe: Any = _create_timm(name, kwargs, features_only=True)
        n = len(probe.feature_info.channels())
        indices = tuple(range(max(0, n - pool_stages), n))
        body: Any = _create_timm(name, kwargs, features_only=True, out_indices=indices)
        dims = list(body.feature_info.channels())
        return MultiScalePool(body, dims), int(sum(dims))
    model: Any = _create_timm(name, kwargs, num_classes=0)
    return model, int(model.num_features)
