"""Released weights out: ``ssl-cyto export CKPT --format timm --out DIR [--push ORG/NAME]``.

Writes a folder that ``timm.create_model("local-dir:DIR", pretrained=True)`` loads with every key
matched (and that can be put on the Hugging Face hub as it is): ``config.json`` and
``model.safetensors`` by :func:`timm.models.save_for_hf`, whose ``pretrained_cfg`` reproduces
ssl_cyto's own evaluation transform (:class:`ssl_cyto.transforms.EvalTransform`: resize the shorter
side to ``input_size`` with bilinear interpolation, centre crop, normalise with the recorded
mean/std; i.e. ``crop_pct=1.0``, ``crop_mode="center"``), so ``timm.data.resolve_data_config`` +
``create_transform`` give the vectors ``ssl-cyto embed`` gives; ``model.json`` (ssl_cyto's record,
``format_version`` 2) and a model card ``README.md`` (data and its licence, method, steps, the probe's
headline figures when a probe report is given).

What timm cannot represent is refused with a clear message: the project's own backbones
(``tiny_cnn``, ``colour_hist`` - so the demo's CPU encoder cannot be exported this way) and
multi-scale pooling. The folder is re-loaded through timm before it is reported written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ssl_cyto.formats.errors import InputError
from ssl_cyto.formats.model_json import MODEL_JSON_VERSION, write_model_json
from ssl_cyto.models.pooling import MultiScalePool
from ssl_cyto.models.registry import BACKBONES
from ssl_cyto.models.state import load_state_strict, serialize_state
from ssl_cyto.training.export import ExportError, backbone_from_checkpoint

__all__ = ["DATA_LICENCES", "PushError", "export_timm", "push_folder", "timm_data_config"]

#: Licences of data that is not a registered source (the sources record theirs: ``CellSource.licence``).
DATA_LICENCES = {"synth": "generated (no licence needed)"}


def _licence(source: str) -> str:
    """The licence of a catalog ``source`` (``aml-lmu``, ``bm-mll``, ``folder:NAME``, ...)."""
    from ssl_cyto.data.sources import source_class

    base = source.partition(":")[0]
    if base in DATA_LICENCES:
        return DATA_LICENCES[base]
    try:
        return str(getattr(source_class(base), "licence", "unknown"))
    except InputError:
        return "unknown"


class PushError(InputError):
    """An upload that cannot happen (not logged in, no huggingface_hub access)."""


def timm_data_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The timm preprocessing equal to ssl_cyto's evaluation transform of ``model.json`` ``meta``."""
    size = int(meta["input_size"])
    return {
        "input_size": (3, size, size),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": tuple(float(v) for v in meta["mean"]),
        "std": tuple(float(v) for v in meta["std"]),
    }


def _refuse_untimm(module: Any, meta: dict[str, Any], ckpt: str) -> None:
    arch = str(meta.get("architecture"))
    if arch in BACKBONES:
        raise ExportError(
            f"{ckpt}: --format timm cannot represent ssl_cyto's own backbone {arch!r} (not a timm model; the "
            "demo's CPU encoder is one); export it with the default format, or train a timm backbone"
        )
    if isinstance(module, MultiScalePool):
        raise ExportError(
            f"{ckpt}: --format timm cannot represent multi-scale pooling (pool='multiscale'); use the default "
            "format, or train with pool='avg'"
        )
    if not hasattr(module, "pretrained_cfg"):
        raise ExportError(f"{ckpt}: the backbone {arch!r} is not a timm model; use the default format")


def _data_licences(meta: dict[str, Any], obj_config: dict[str, Any]) -> dict[str, str]:
    """``{source: licence}`` of the training data, read from the shard folder's index.json when it can be."""
    data = obj_config.get("data")
    spec = str((data if isinstance(data, dict) else {}).get("data") or "")
    sources: list[str] = []
    index = Path(spec) / "index.json" if spec and Path(spec).is_dir() else None
    if index is not None and index.is_file():
        sources = list(json.loads(index.read_text(encoding="utf-8")).get("sources") or {})
    elif spec.startswith("synth:"):
        sources = ["synth"]
    if not sources:
        return {spec or "unknown": "unknown"}
    return {s: _licence(s) for s in sources}


def _model_card(meta: dict[str, Any], licences: dict[str, str], probe: dict[str, Any] | None) -> str:
    lines = [
        "---",
        "library_name: timm",
        "tags: [image-feature-extraction, self-supervised, cytomorphology, ssl_cyto]",
        "---",
        f"# {meta.get('method', 'ssl')} {meta['architecture']} (ssl_cyto)",
        "",
        f"A self-supervised backbone for single-cell cytomorphology images, trained with ssl_cyto "
        f"({meta.get('method')}, {meta.get('global_step')} optimiser steps, seed {meta.get('seed')}, config hash "
        f"{meta.get('config_hash')}, git commit {meta.get('git_commit')}).",
        "",
        "## Data and licence",
        *[f"- {source}: {licence}" for source, licence in licences.items()],
        "",
        "## Use",
        "```python",
        "import timm",
        'model = timm.create_model("local-dir:THIS_FOLDER", pretrained=True)  # or hf-hub:ORG/NAME',
        "cfg = timm.data.resolve_data_config({}, model=model)",
        "transform = timm.data.create_transform(**cfg)  # = ssl_cyto's evaluation transform",
        "```",
        f"Input {meta['input_size']} px, mean {meta['mean']}, std {meta['std']}, {meta.get('embed_dim')}-d features.",
    ]
    if meta.get("source"):
        lines += ["", f"Started from released weights: {meta['source']}."]
    if probe:
        lines += [
            "",
            "## Probe (from the probe report given at export)",
            "```json",
            json.dumps(probe, indent=2)[:4000],
            "```",
        ]
    return "\n".join(lines) + "\n"


def _probe_headline(path: str | os.PathLike | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"--probe-report {p}: not found (a probe's report.json)")
    report = json.loads(p.read_text(encoding="utf-8"))
    keys = ("headline", "summary", "results", "metrics")
    return {k: report[k] for k in keys if k in report} or report


def export_timm(
    ckpt: str | os.PathLike, out_dir: str | os.PathLike, probe_report: str | os.PathLike | None = None
) -> Path:
    """Write the timm folder of a training checkpoint (see the module docstring); returns ``out_dir``.

    Raises:
        ExportError: a backbone timm cannot represent, or a folder that does not load back strictly.
    """
    import timm

    module, meta = backbone_from_checkpoint(Path(ckpt))
    _refuse_untimm(module, meta, str(ckpt))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {
        k: v for k, v in dict(meta.get("backbone_kwargs") or {}).items() if k not in ("pool", "pool_stages")
    }
    timm.models.save_for_hf(
        module, str(out), model_args=kwargs, safe_serialization=True, data_config=timm_data_config(meta)
    )
    from ssl_cyto.formats.hashing import sha256_bytes

    meta.update(weights_sha256=sha256_bytes(serialize_state(module)), format_version=MODEL_JSON_VERSION)
    meta.update(weights_file="model.safetensors", export_format="timm")
    from ssl_cyto.training.export import load_checkpoint

    config = dict((load_checkpoint(Path(ckpt)).get("ssl_cyto") or {}).get("config") or {})
    licences = _data_licences(meta, config)
    meta["data_licences"] = licences
    write_model_json(out, meta)
    (out / "README.md").write_text(
        _model_card(meta, licences, _probe_headline(probe_report)), encoding="utf-8"
    )
    back = timm.create_model(f"local-dir:{out}", pretrained=False, num_classes=0)
    from ssl_cyto.models.state import read_state_dict

    load_state_strict(back, read_state_dict(out / "model.safetensors"), str(out))  # every key maps
    return out


def push_folder(folder: str | os.PathLike, repo: str) -> str:
    """Upload an exported folder to the hub repository ``repo`` (``ORG/NAME``); returns its URL.

    Raises:
        PushError: not logged in (or the hub refuses); one line, nothing half-uploaded is claimed.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        user = api.whoami()
    except Exception as exc:  # huggingface_hub raises several kinds when no token is set
        raise PushError(
            f"--push {repo}: not logged in to the Hugging Face hub ({type(exc).__name__}); run `hf auth login` "
            f"(or set HF_TOKEN) and push again; the folder {folder} is written"
        ) from exc
    try:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as exc:  # network and permission errors of the hub client
        raise PushError(f"--push {repo}: the hub refused the upload as {user.get('name')}: {exc}") from exc
    print(f"ssl-cyto: pushed {folder} to https://huggingface.co/{repo}", file=sys.stderr)
    return f"https://huggingface.co/{repo}"
