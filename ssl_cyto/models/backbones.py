"""Backbones: a timm factory, a tiny CNN for tests and CPU runs, and export / load with ``model.json``.

Every backbone maps a batch of normalised RGB images ``(B, 3, H, W)`` to features ``(B, D)``.
Nothing here downloads weights: timm models are always built with ``pretrained=False`` and start
either from random weights or from a local file (``checkpoint_path``).

A saved backbone is a folder holding ``weights.pt`` (the ``state_dict``) and ``model.json``::

    architecture, backbone_kwargs, embed_dim, input_size, mean, std, weights_file, weights_sha256,
    method, config_hash, seed, git_commit, package_versions, created

``weights_sha256`` is the SHA-256 of the bytes of ``weights.pt``; for a randomly initialised model
(``load_backbone("resnet18")``) it is the SHA-256 of the bytes ``save_backbone`` would write, so the
two agree once the random model is saved.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Backbones that must see raw [0, 1] pixels (no normalisation).
IDENTITY_NORM_BACKBONES = ("colour_hist",)
MODEL_JSON_KEYS = (
    "architecture",
    "backbone_kwargs",
    "embed_dim",
    "input_size",
    "mean",
    "std",
    "weights_file",
    "weights_sha256",
    "method",
    "config_hash",
    "seed",
    "git_commit",
    "package_versions",
    "created",
)
WEIGHTS_FILE = "weights.pt"
POOL_CHOICES = ("avg", "multiscale")


class BackboneError(ValueError):
    """A backbone name, option or file that cannot be used (the message says which and how to fix it)."""


def backbone_norm(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) a backbone expects its inputs normalised with.

    ImageNet statistics for every learned backbone (the usual convention; stain colours are kept,
    only shifted and scaled), identity for the colour-histogram baseline which bins raw pixels.
    """
    if name in IDENTITY_NORM_BACKBONES:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return IMAGENET_MEAN, IMAGENET_STD


def default_input_size(name: str, backbone_kwargs: dict[str, Any] | None = None) -> int:
    """A sensible input size for a backbone: a ViT's ``img_size`` (224 by default), else 96 px.

    96 px keeps nucleus texture and granules of a ~360 px PBC/AML cell crop while staying cheap on
    CPU; GPU configs usually set 224.
    """
    kwargs = backbone_kwargs or {}
    if "img_size" in kwargs:
        return int(kwargs["img_size"])
    if name.startswith(("vit", "deit")):
        return 224
    return 96


# --------------------------------------------------------------------------------------------------
# modules


def _tiny_cnn_class() -> type:
    if "TinyCNN" in globals():
        return globals()["TinyCNN"]
    from torch import nn

    class TinyCNN(nn.Module):
        """A small, fast CNN (conv-BN-ReLU stages, stride 2 each) for tests and CPU runs.

        Args:
            width: channels of the first stage; each stage doubles it.
            depth: number of stages.
            pool: ``"avg"`` (global average pooling of the last stage) or ``"multiscale"``
                (concatenate the global-average-pooled features of the last ``pool_stages`` stages).
            pool_stages: stages pooled with ``pool="multiscale"``.
        """

        def __init__(self, width: int = 32, depth: int = 4, pool: str = "avg", pool_stages: int = 3) -> None:
            super().__init__()
            if depth < 1 or width < 1:
                raise BackboneError(
                    f"tiny_cnn needs width >= 1 and depth >= 1, got width={width}, depth={depth}"
                )
            stages = []
            cin = 3
            self.widths: list[int] = []
            for i in range(depth):
                cout = width * 2**i
                stages.append(
                    nn.Sequential(
                        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(cout),
                        nn.ReLU(inplace=True),
                        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                        nn.BatchNorm2d(cout),
                        nn.ReLU(inplace=True),
                    )
                )
                self.widths.append(cout)
                cin = cout
            self.stages = nn.ModuleList(stages)
            self.pool = pool
            self.pool_stages = min(pool_stages, depth) if pool == "multiscale" else 1
            self.num_features = sum(self.widths[-self.pool_stages :])

        def forward(self, x):
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            return torch_cat([f.mean(dim=(2, 3)) for f in feats[-self.pool_stages :]])

    return _publish(TinyCNN)


def _publish(cls: type) -> type:
    """Make a lazily defined class importable (and picklable) as ``ssl_cyto.models.backbones.<name>``."""
    cls.__qualname__ = cls.__name__
    cls.__module__ = __name__
    globals()[cls.__name__] = cls
    return cls


def __getattr__(name: str) -> Any:
    # PEP 562: the nn.Module classes are defined on first use, so importing this module stays cheap.
    if name == "TinyCNN":
        return _tiny_cnn_class()
    if name == "MultiScalePool":
        return _multiscale_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_cat(tensors: list) -> Any:
    import torch

    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=1)


def _multiscale_class() -> type:
    if "MultiScalePool" in globals():
        return globals()["MultiScalePool"]
    from torch import nn

    class MultiScalePool(nn.Module):
        """A timm CNN (``features_only``) whose last ``stages`` feature maps are average-pooled and
        concatenated, so early-layer colour/texture information reaches the embedding."""

        def __init__(self, body: nn.Module, dims: list[int]) -> None:
            super().__init__()
            self.body = body
            self.num_features = sum(dims)

        def forward(self, x):
            return torch_cat([f.mean(dim=(2, 3)) for f in self.body(x)])

    return _publish(MultiScalePool)


def build_backbone(
    name: str,
    *,
    checkpoint_path: str | None = None,
    pool: str = "avg",
    pool_stages: int = 3,
    **kwargs: Any,
) -> tuple[nn.Module, int]:
    """Build a feature extractor ``(B, 3, H, W) -> (B, D)`` by name, never downloading weights.

    Args:
        name: a timm model name (``resnet18``, ``resnet50``, ``vit_small_patch16_224``,
            ``vit_tiny_patch16_224``, ...), ``tiny_cnn`` or ``colour_hist`` (the colour-histogram
            floor from :mod:`ssl_cyto.evaluation.baselines`, expecting [0, 1] pixels).
        checkpoint_path: optional local file to start from: a ``weights.pt``/backbone folder written by
            :func:`save_backbone`, a plain ``state_dict``, or a Lightning ``.ckpt`` (its ``backbone.*``
            weights, else ``student_backbone.*``).
        pool: ``"avg"`` (timm's global pooling) or ``"multiscale"`` (CNNs only: concatenate the
            global-average-pooled features of the last ``pool_stages`` stages).
        pool_stages: stages pooled with ``pool="multiscale"``.
        **kwargs: passed to the model: ``tiny_cnn`` takes ``width`` and ``depth``; timm models take
            their own options (``img_size`` for ViTs; ``dynamic_img_size`` defaults to True for ViTs
            so DINO's local crops fit).

    Returns:
        ``(module, embed_dim)``.

    Raises:
        BackboneError: unknown name, bad option, or a checkpoint that does not fit.
    """
    if pool not in POOL_CHOICES:
        raise BackboneError(f"pool must be one of {POOL_CHOICES}, got {pool!r}")
    module: nn.Module
    if name == "tiny_cnn":
        allowed = {"width", "depth"}
        extra = set(kwargs) - allowed
        if extra:
            raise BackboneError(
                f"tiny_cnn takes only {sorted(allowed)} (and pool, pool_stages); got {sorted(extra)}"
            )
        module = _tiny_cnn_class()(pool=pool, pool_stages=pool_stages, **kwargs)
        dim = int(module.num_features)  # type: ignore[arg-type]
    elif name == "colour_hist":
        from ssl_cyto.evaluation.baselines import ColourHistogram

        module = ColourHistogram(**kwargs)
        dim = _infer_dim(module)
    else:
        module, dim = _build_timm(name, pool, pool_stages, kwargs)
    if checkpoint_path:
        load_weights_into(module, checkpoint_path)
    return module, dim


def _infer_dim(module: Any) -> int:
    for attr in ("embed_dim", "num_features", "out_dim", "dim"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    import torch

    with torch.no_grad():
        return int(module(torch.rand(1, 3, 32, 32)).shape[-1])


def _build_timm(name: str, pool: str, pool_stages: int, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    import timm

    if not timm.is_model(name):
        raise BackboneError(
            f"unknown backbone {name!r}: use a timm model name (e.g. resnet18, resnet50, "
            "vit_small_patch16_224, vit_tiny_patch16_224), 'tiny_cnn' or 'colour_hist'"
        )
    kwargs = dict(kwargs)
    is_vit = name.startswith(("vit", "deit"))
    if is_vit:
        kwargs.setdefault("dynamic_img_size", True)
    try:
        if pool == "multiscale":
            if is_vit:
                raise BackboneError(f"pool='multiscale' works for CNNs only, not {name!r}; use pool='avg'")
            probe: Any = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
            n = len(probe.feature_info.channels())
            indices = tuple(range(max(0, n - pool_stages), n))
            body: Any = timm.create_model(
                name, pretrained=False, features_only=True, out_indices=indices, **kwargs
            )
            dims = list(body.feature_info.channels())
            module = _multiscale_class()(body, dims)
            return module, int(sum(dims))
        model: Any = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise BackboneError(f"bad backbone_kwargs for {name!r}: {exc}") from exc
    return model, int(model.num_features)


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.exists():
        raise BackboneError(f"checkpoint_path {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj:
        sd = obj["state_dict"]
        for prefix in ("backbone.", "student_backbone."):
            sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            if sub:
                return sub
        raise BackboneError(f"{path}: checkpoint has no 'backbone.*' or 'student_backbone.*' weights")
    if not isinstance(obj, dict):
        raise BackboneError(
            f"{path}: expected a state_dict or a Lightning checkpoint, got {type(obj).__name__}"
        )
    return obj


def load_weights_into(module: nn.Module, path: str | Path) -> None:
    """Load a local weights file (see :func:`build_backbone`) into ``module`` strictly."""
    sd = _read_state_dict(Path(path))
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{path}: weights do not fit this backbone: {str(exc)[:500]}") from exc


# --------------------------------------------------------------------------------------------------
# export / load


def _serialize_state(module: nn.Module) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a backbone's outputs."""
    from importlib import metadata

    versions = {}
    for pkg in ("torch", "torchvision", "timm", "lightly", "pytorch-lightning", "ssl-cyto"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_backbone(module: nn.Module, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``out_dir``; returns ``out_dir``.

    Args:
        module: the backbone (its ``state_dict`` is saved, on CPU).
        out_dir: folder to write (created).
        meta: at least ``architecture``; ``backbone_kwargs``, ``embed_dim``, ``input_size``, ``mean``,
            ``std``, ``method``, ``config_hash`` and ``seed`` are copied when given (``embed_dim``,
            ``input_size``, ``mean``/``std`` get defaults). ``weights_file``, ``weights_sha256``,
            ``git_commit``, ``package_versions`` and ``created`` are filled in here.
    """
    if "architecture" not in meta:
        raise BackboneError("save_backbone: meta needs 'architecture' (the name given to build_backbone)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _serialize_state(module)
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
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "method": meta.get("method"),
        "config_hash": meta.get("config_hash"),
        "seed": meta.get("seed"),
        "git_commit": meta.get("git_commit") or _git_commit(),
        "package_versions": meta.get("package_versions") or package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "model.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def load_backbone(
    spec: str, seed: int = 0, input_size: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a backbone from a folder, a ``model.json``, a ``.ckpt``, or build one by name.

    Args:
        spec: a backbone folder (``weights.pt`` + ``model.json``), its ``model.json``, a Lightning
            ``.ckpt`` (delegated to :func:`ssl_cyto.export.backbone_from_checkpoint`), or a
            timm / ``tiny_cnn`` name (seeded random weights; ``meta["random_init"] = True``).
        seed: seed of the random weights when ``spec`` is a name.
        input_size: input size recorded for a name (default :func:`default_input_size`).

    Returns:
        ``(module in eval mode, meta)`` where meta has the ``model.json`` keys.

    Raises:
        BackboneError: a missing file, a weights file whose SHA-256 differs from ``model.json``, or
            an unknown name.
    """
    import torch

    path = Path(spec)
    if path.suffix == ".ckpt":
        if not path.exists():
            raise BackboneError(f"checkpoint {path} does not exist")
        from ssl_cyto.export import backbone_from_checkpoint

        module, meta = backbone_from_checkpoint(path)
        meta = dict(meta)
        if not meta.get("weights_sha256"):  # the hash save_backbone would record for these weights
            meta["weights_sha256"] = hashlib.sha256(_serialize_state(module)).hexdigest()
        return module.eval(), meta
    if path.is_dir() or path.name == "model.json":
        folder = path if path.is_dir() else path.parent
        mj = folder / "model.json"
        if not mj.exists():
            raise BackboneError(
                f"{folder} is not a backbone folder: model.json missing (run `ssl-cyto export`)"
            )
        meta = json.loads(mj.read_text())
        missing = [k for k in ("architecture", "weights_file", "weights_sha256") if k not in meta]
        if missing:
            raise BackboneError(f"{mj}: missing keys {missing}")
        wfile = folder / meta["weights_file"]
        if not wfile.exists():
            raise BackboneError(f"{mj}: weights file {wfile} not found")
        data = wfile.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["weights_sha256"]:
            raise BackboneError(
                f"{wfile}: sha256 {digest[:12]}... differs from model.json ({str(meta['weights_sha256'])[:12]}...); "
                "the weights were changed or the folder mixes two exports"
            )
        module, _ = build_backbone(meta["architecture"], **dict(meta.get("backbone_kwargs") or {}))
        import io

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
        return module.eval(), meta
    if path.exists():
        raise BackboneError(f"{path}: not a backbone folder, model.json or .ckpt")
    name = spec
    kwargs: dict[str, Any] = {}
    if name.startswith(("vit", "deit")) and input_size:
        kwargs["img_size"] = input_size
    torch.manual_seed(seed)
    module, dim = build_backbone(name, **kwargs)
    mean, std = backbone_norm(name)
    meta = {
        "architecture": name,
        "backbone_kwargs": kwargs,
        "embed_dim": dim,
        "input_size": int(input_size or default_input_size(name, kwargs)),
        "mean": list(mean),
        "std": list(std),
        "weights_file": None,
        "weights_sha256": hashlib.sha256(_serialize_state(module)).hexdigest(),
        "method": "random",
        "config_hash": None,
        "seed": seed,
        "git_commit": _git_commit(),
        "package_versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "random_init": True,
    }
    return module.eval(), meta


def eval_transform_from_meta(meta: dict[str, Any]) -> Callable[[Any], torch.Tensor]:
    """The evaluation transform of a backbone: resize shorter side, centre crop to ``input_size``,
    normalise with the recorded ``mean``/``std`` (PIL RGB -> float Tensor (3, S, S))."""
    from ssl_cyto.transforms import EvalTransform

    for key in ("input_size", "mean", "std"):
        if key not in meta:
            raise BackboneError(f"model meta lacks {key!r}; re-export the backbone with `ssl-cyto export`")
    return EvalTransform(int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]))
