"""ssl_cyto.formats.embeddings: the embedding folder's reader and writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.formats import embeddings as fe
from ssl_cyto.formats.catalog import CATALOG_COLUMNS
from ssl_cyto.formats.errors import InputError, MissingInputError


def cells_frame(n: int, root: str = "/data/x") -> pd.DataFrame:
    rows = [
        {c: None for c in CATALOG_COLUMNS}
        | {"cell_id": f"folder:t/{i:03d}.png", "source": "folder:t", "path": f"{i:03d}.png", "root": root}
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=CATALOG_COLUMNS)


def test_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    model = {"architecture": "tiny_cnn", "weights_sha256": "b" * 64, "random_init": True}
    out = fe.write_embedding_folder(
        tmp_path / "emb", x, cells_frame(5), model, {"data": "x", "counts": {"cells": 5}}
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(fe.FOLDER_FILES)
    assert fe.is_embedding_folder(out) and not fe.is_embedding_folder(tmp_path)
    folder = fe.read_embedding_folder(out)
    assert isinstance(folder.vectors, np.memmap) and folder.vectors.dtype == np.float32
    np.testing.assert_allclose(folder.vectors, x.astype(np.float32))
    assert folder.n == 5 and folder.dim == 3 and folder.has_model
    assert list(folder.cells.columns) == CATALOG_COLUMNS and folder.cells["cell_id"].is_unique
    assert folder.model == model and folder.embed["data"] == "x"
    assert folder.embed["roots"] == ["/data/x"] == folder.roots
    loaded = fe.read_embedding_folder(out, mmap=False)
    assert not isinstance(loaded.vectors, np.memmap)
    assert fe.read_embed_json(out) == folder.embed == json.loads((out / fe.EMBED_JSON).read_text())


def test_memmap_is_renamed_not_copied(tmp_path: Path) -> None:
    out = tmp_path / "emb"
    out.mkdir()
    vec = fe.new_vectors_file(out, 4, 2)
    vec[:] = np.arange(8, dtype=np.float32).reshape(4, 2)
    fe.write_embedding_folder(out, vec, cells_frame(4), {}, {"roots": ["/given"]})
    assert not list(out.glob("*.tmp"))
    folder = fe.read_embedding_folder(out)
    np.testing.assert_array_equal(folder.vectors, np.arange(8).reshape(4, 2))
    assert folder.roots == ["/given"]  # an explicit roots entry is kept


def test_hand_made_folder_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "emb"
    out.mkdir()
    with pytest.raises(MissingInputError, match="embeddings.npy not found"):
        fe.read_embedding_folder(out)
    np.save(out / "embeddings.npy", np.ones((3, 2), dtype=np.float32))
    cells = pd.DataFrame({"cell_id": ["a", "b", "c"], "root": ["/r", "/r", "/s"], "path": ["1", "2", "3"]})
    cells.to_parquet(out / "cells.parquet")
    folder = fe.read_embedding_folder(out)  # no model.json / embed.json: empty dicts
    assert folder.model == {} and folder.embed == {} and not folder.has_model
    assert folder.cells["label"].isna().all() and folder.roots == ["/r", "/s"]
    np.save(out / "embeddings.npy", np.ones((2, 2), dtype=np.float32))
    with pytest.raises(fe.EmbeddingFolderError, match="cells.parquet has 3"):
        fe.read_embedding_folder(out)
    np.save(out / "embeddings.npy", np.ones((3, 2), dtype=np.float32))
    cells.assign(cell_id=["a", "a", "c"]).to_parquet(out / "cells.parquet")
    with pytest.raises(InputError, match="'a' appears more than once"):
        fe.read_embedding_folder(out)
    cells.to_parquet(out / "cells.parquet")
    (out / "embed.json").write_text("{not json")
    with pytest.raises(fe.EmbeddingFolderError, match="not valid JSON"):
        fe.read_embedding_folder(out)
    with pytest.raises(fe.EmbeddingFolderError, match="one \\(D,\\) row per cell"):
        fe.write_embedding_folder(tmp_path / "bad", np.ones((2, 2)), cells, {}, {})
