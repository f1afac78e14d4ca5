"""A fake Hugging Face hub cache for tests: timm models saved with ``timm.models.save_for_hf`` and laid
out as huggingface_hub's cache (``HF_HOME/hub/models--ORG--NAME/snapshots/<rev>/``, ``refs/main``),
served with ``HF_HUB_OFFLINE=1`` so nothing touches the network.

Use :func:`fake_hub` (in-process and for subprocesses: it sets ``HF_HOME``/``HF_HUB_OFFLINE`` in the
environment and patches ``huggingface_hub.constants``), then :func:`publish` each model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point huggingface_hub at an empty offline cache under ``tmp_path``; returns ``HF_HOME``."""
    import huggingface_hub.constants as constants

    from ssl_cyto.models import hub

    home = tmp_path / "hf_home"
    (home / "hub").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "_KNOWN", {})
    return home


def publish(
    home: Path,
    name: str,
    arch: str = "resnet18",
    *,
    seed: int = 0,
    safetensors: bool = True,
    config: dict[str, Any] | None = None,
    data_config: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """Save a seeded ``timm.create_model(arch, **model_kwargs)`` as hub repository ``test/NAME``.

    Args:
        home: ``HF_HOME`` from :func:`fake_hub`.
        name: repository name (served as ``hf-hub:test/NAME``).
        arch: timm architecture.
        seed: torch seed of the weights.
        safetensors: ``model.safetensors`` (else ``pytorch_model.bin``).
        config: write this ``config.json`` instead of timm's (e.g. a transformers one); None: timm's.
        data_config: preprocessing to record (``mean``, ``std``, ``interpolation``, ``crop_pct``).
        **model_kwargs: passed to ``timm.create_model``.

    Returns:
        The saved ``state_dict`` (tensors), to compare loaded weights with.
    """
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, **model_kwargs)
    repo = home / "hub" / f"models--test--{name}"
    snap = repo / "snapshots" / REVISION
    tmp = home / "staging" / name
    timm.models.save_for_hf(model, str(tmp), safe_serialization=safetensors, data_config=data_config)
    if config is not None:
        (tmp / "config.json").write_text(json.dumps(config))
    snap.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        shutil.copy2(f, snap / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    shutil.rmtree(tmp)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
