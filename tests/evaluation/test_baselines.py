"""The random-weights and colour-histogram baselines: embedded in one pass over the images, reused, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.evaluation import probing as P
from ssl_cyto.evaluation.baselines import align_features
from tests.evaluation.emb_folders import blobs, write_emb_dir


def test_auto_baselines_are_embedded_in_one_pass_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--baselines auto builds both backbones and reads the data once (embed.json's spec and batch size)."""
    import pandas as pd
    import torch

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
    rows = pd.read_parquet(d / "cells.parquet").to_dict("records")
    calls: list[dict] = []

    def fake_loader(data, transform, batch_size=64, num_workers=0):  # type: ignore[no-untyped-def]
        calls.append({"data": data, "batch_size": batch_size, "size": transform.input_size})
        gen = torch.Generator().manual_seed(0)
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            yield torch.rand(len(batch), 3, 32, 32, generator=gen), batch

    monkeypatch.setattr("ssl_cyto.evaluation.baselines.eval_loader", fake_loader)
    res = P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert calls == [{"data": "some/shards", "batch_size": 7, "size": 32}]  # one pass for both
    rnd = json.loads((d / "baselines" / "random" / "backbone" / "model.json").read_text())
    assert (rnd["architecture"], rnd["backbone_kwargs"], rnd["method"], rnd["input_size"]) == (
        "tiny_cnn",
        {"width": 8, "depth": 2},
        "random",
        32,
    )
    col = json.loads((d / "baselines" / "colour" / "backbone" / "model.json").read_text())
    assert col["architecture"] == "colour_hist" and col["std"] == [1.0, 1.0, 1.0]
    for kind in ("random", "colour"):
        assert len(np.load(d / "baselines" / kind / "embeddings.npy")) == len(rows)
    assert len(res["models"]) == 3
    P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert len(calls) == 1  # reused, not embedded again


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
    # the one pass gives what embed() gives for each baseline on its own
    for kind in ("random", "colour"):
        alone = embed(str(emb / "baselines" / kind / "backbone"), str(synth_folder), tmp_path / kind, progress=False)
        ours = align_features(pd.read_parquet(alone / "cells.parquet"), emb / "baselines" / kind)
        np.testing.assert_allclose(ours, np.load(alone / "embeddings.npy"), atol=1e-5)
    assert rnd["weights_sha256"] != json.loads((emb / "model.json").read_text())["weights_sha256"]
    (task,) = res["tasks"].values()
    assert set(task["vs_baselines"]) == {"random weights (tiny_cnn)", "colour histogram"}
    assert task["n_test"] > 0
