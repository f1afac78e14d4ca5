"""Checkpoints written by main before the layered redesign (f8d3bf8, tests/fixtures/main_f8d3bf8) still
load, export and embed: their recorded class paths ``ssl_cyto.tasks.SimCLR`` / ``ssl_cyto.tasks.DINO``
resolve, their hyper-parameters rebuild today's tasks, and their weights fit strictly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_cyto.formats.model_json import MODEL_JSON_KEYS
from ssl_cyto.models.weights import load_backbone_folder
from ssl_cyto.training.export import backbone_from_checkpoint, export_checkpoint, task_from_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "main_f8d3bf8"
METHODS = {"simclr": "SimCLR", "dino": "DINO"}


@pytest.mark.parametrize("method", list(METHODS))
def test_old_checkpoint_loads_and_exports(method: str, tmp_path: Path) -> None:
    ckpt = FIXTURES / f"{method}_tiny.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["ssl_cyto"]["task_class"] == f"ssl_cyto.tasks.{METHODS[method]}"
    task, _ = task_from_checkpoint(ckpt)
    assert type(task).__name__ == METHODS[method] and task.method == method
    assert saved["global_step"] == 2

    out = export_checkpoint(ckpt, tmp_path / "backbone")
    meta = json.loads((out / "model.json").read_text())
    assert set(MODEL_JSON_KEYS) <= set(meta)
    assert meta["architecture"] == "tiny_cnn" and meta["backbone_kwargs"] == {"width": 8, "depth": 2}
    assert meta["method"] == method and meta["config_hash"] == saved["ssl_cyto"]["config_hash"]
    # the exported weights are the trained ones (DINO: the teacher), bit for bit
    prefix = "teacher_backbone." if method == "dino" else "backbone."
    expected = {k[len(prefix) :]: v for k, v in saved["state_dict"].items() if k.startswith(prefix)}
    weights = torch.load(out / "weights.pt", map_location="cpu", weights_only=True)
    assert set(weights) == set(expected) and all(torch.equal(weights[k], expected[k]) for k in expected)

    folder_module, _ = load_backbone_folder(out)
    ckpt_module, _ = backbone_from_checkpoint(ckpt)
    x = torch.rand(3, 3, meta["input_size"], meta["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(folder_module(x), ckpt_module(x))


@pytest.mark.parametrize("method", list(METHODS))
def test_old_checkpoint_embeds(method: str, tmp_path: Path, synth_folder: Path) -> None:
    runner = pytest.importorskip("ssl_cyto.embedding.runner")
    from ssl_cyto.formats.embeddings import read_embedding_folder

    out = runner.embed(FIXTURES / f"{method}_tiny.ckpt", synth_folder, tmp_path / "emb", progress=False)
    folder = read_embedding_folder(out)
    assert folder.vectors.shape[1] == 16 and len(folder.vectors) == len(folder.cells) > 0
    assert np.isfinite(np.asarray(folder.vectors)).all()
    assert folder.model["method"] == method and folder.model["architecture"] == "tiny_cnn"
