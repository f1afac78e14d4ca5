"""Loading once: start-up problems are one clear ServeError; the UMAP is picked up when present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ssl_cyto.retrieval.index_io import resolve_index_path
from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.errors import ServeError
from ssl_cyto.serve.state import UMAP_FILE, load_state


def test_missing_folder_and_missing_index(tmp_path: Path, serve_emb: Path) -> None:
    with pytest.raises(ServeError, match="not found"):
        load_state(tmp_path / "nope")
    copy = tmp_path / "emb"
    shutil.copytree(serve_emb, copy)
    (copy / "index.faiss").unlink()
    with pytest.raises(ServeError, match="ssl-cyto index build"):
        load_state(copy)


def test_other_weights_are_refused(tmp_path: Path, serve_emb: Path) -> None:
    copy = tmp_path / "emb"
    shutil.copytree(serve_emb, copy)
    meta_path = resolve_index_path(copy)[1]  # index.faiss.json (index.json before issue 23)
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ServeError, match="not the model of this index"):
        load_state(copy, device="cpu", threads=1)


def test_missing_model_is_one_line(tmp_path: Path, serve_emb: Path) -> None:
    copy = tmp_path / "emb"
    shutil.copytree(serve_emb, copy)
    shutil.rmtree(copy / "backbone")
    record = json.loads((copy / "embed.json").read_text())
    record["model"]["path"] = str(tmp_path / "gone")
    (copy / "embed.json").write_text(json.dumps(record))
    with pytest.raises(ServeError, match="cannot load the model") as exc:
        load_state(copy, device="cpu", threads=1)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("where", ["umap-default", "demo-layout"])
def test_umap_is_served_when_written(tmp_path: Path, serve_emb: Path, where: str) -> None:
    copy = tmp_path / "emb"
    shutil.copytree(serve_emb, copy)
    cells = pd.read_parquet(copy / "cells.parquet")
    umap_file = (
        copy / UMAP_FILE if where == "umap-default" else tmp_path / UMAP_FILE
    )  # demo: OUT/umap beside OUT/emb
    umap_file.parent.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "cell_id": cells["cell_id"],
            "source": cells["source"],
            "label": cells["label"],
            "x": rng.normal(size=len(cells)),
            "y": rng.normal(size=len(cells)),
        }
    ).to_parquet(umap_file)
    state = load_state(copy, device="cpu", threads=1)
    with TestClient(create_app(state)) as client:
        body = client.get("/api/umap").json()
        assert body["available"] is True and body["cell_id"] == cells["cell_id"].tolist()
        assert len(body["x"]) == len(body["y"]) == len(body["label"]) == len(cells)
        assert client.get("/api/info").json()["umap"] is True


def test_cuda_without_a_gpu_is_a_startup_error(serve_emb: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ServeError, match="--device"):
        load_state(serve_emb, device="cuda")
