"""The random-weights and colour-histogram baselines: embedded through embed(), reused, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssl_cyto.evaluation import probing as P
from tests.evaluation.emb_folders import blobs, write_emb_dir


def test_auto_baselines_go_through_embed_and_are_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--baselines auto builds the random backbone from model.json and calls embed() with embed.json's spec."""
    import shutil

    x, labels = blobs(15, 2)
    d = write_emb_dir(tmp_path / "e", x, labels)
    meta = {
        "architecture": "tiny_cnn",
        "backbone_kwargs": {"width": 8, "depth": 2},
        "method": "dino",
        "input_size": 32,
    }
    (d / "model.json").write_text(json.dumps(meta))
    (d / "embed.json").write_text(
        json.dumps({"data": "some/shards", "options": {"batch_size": 7, "device": "cuda:3", "seed": 5}})
    )
    calls: list[dict] = []

    def fake_embed(
        model: str, data: str, out_dir: str, *, batch_size: int = 256, device: str = "auto"
    ) -> Path:
        assert device == "auto"
        calls.append({"model": model, "data": data, "out_dir": out_dir, "batch_size": batch_size})
        out = Path(out_dir)
        shutil.copy(d / "cells.parquet", out / "cells.parquet")
        rng = np.random.default_rng(len(calls))
        np.save(out / "embeddings.npy", rng.normal(size=x.shape).astype(np.float32))
        shutil.copy(Path(model) / "model.json", out / "model.json")
        return out

    monkeypatch.setattr("ssl_cyto.evaluation.baselines.embed", fake_embed)
    res = P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert [Path(c["out_dir"]).name for c in calls] == ["random", "colour"]
    assert all(c["data"] == "some/shards" and c["batch_size"] == 7 for c in calls)
    rnd = json.loads((d / "baselines" / "random" / "backbone" / "model.json").read_text())
    assert (rnd["architecture"], rnd["backbone_kwargs"], rnd["method"], rnd["input_size"]) == (
        "tiny_cnn",
        {"width": 8, "depth": 2},
        "random",
        32,
    )
    col = json.loads((d / "baselines" / "colour" / "backbone" / "model.json").read_text())
    assert col["architecture"] == "colour_hist" and col["std"] == [1.0, 1.0, 1.0]
    assert len(res["models"]) == 3
    P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert len(calls) == 2  # reused, not embedded again


def test_end_to_end_with_real_embed(tmp_path: Path, synth_folder: Path) -> None:
    """Generated folder -> embed (a tiny_cnn backbone) -> probe: both baselines embedded by the real embed()."""
    torch = pytest.importorskip("torch")
    from ssl_cyto.embedding.runner import embed
    from ssl_cyto.models.factory import build_backbone
    from ssl_cyto.models.weights import save_backbone

    torch.manual_seed(123)  # "trained" weights: anything but the baseline's seeded init (seed 0)
    module, dim = build_backbone("tiny_cnn", width=8, depth=2)
    bb = save_backbone(
        module,
        tmp_path / "backbone",
        {
            "architecture": "tiny_cnn",
            "backbone_kwargs": {"width": 8, "depth": 2},
            "input_size": 32,
            "method": "simclr",
        },
    )
    emb = embed(str(bb), str(synth_folder), tmp_path / "emb", batch_size=16, progress=False)
    res = P.probe(emb, fast=True, min_cells=3, n_boot=50)
    assert len(res["models"]) == 3
    for kind in ("random", "colour"):
        assert (emb / "baselines" / kind / "embeddings.npy").exists()
    assert (
        json.loads((emb / "baselines" / "colour" / "model.json").read_text())["architecture"] == "colour_hist"
    )
    rnd = json.loads((emb / "baselines" / "random" / "model.json").read_text())
    assert rnd["architecture"] == "tiny_cnn" and rnd["input_size"] == 32
    assert rnd["weights_sha256"] != json.loads((emb / "model.json").read_text())["weights_sha256"]
    (task,) = res["tasks"].values()
    assert set(task["vs_baselines"]) == {"random weights (tiny_cnn)", "colour histogram"}
    assert task["n_test"] > 0
