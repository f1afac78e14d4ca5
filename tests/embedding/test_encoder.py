"""The one encoder path: embed, query and serve give one image the same vector; released weights from a
fake hub cache flow through embed, query and serve; a copied folder keeps its in-folder backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.embedding import ModelMismatchError, embed
from ssl_cyto.embedding.encoder import Encoder
from ssl_cyto.retrieval.index_io import build_index
from tests.models.hub_support import REVISION, fake_hub, publish


def _first_cell(emb: Path) -> tuple[Path, np.ndarray]:
    cells = pd.read_parquet(emb / "cells.parquet")
    row = cells.iloc[0]
    return Path(row["root"]) / row["path"], np.load(emb / "embeddings.npy")[0]


def test_embed_query_and_serve_give_one_image_the_same_vector(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from ssl_cyto.retrieval import search
    from ssl_cyto.serve.state import load_state

    home = fake_hub(tmp_path, monkeypatch)
    saved = publish(
        home, "vit", "vit_tiny_patch16_224", img_size=32, data_config={"mean": (0.5,) * 3, "std": (0.2,) * 3}
    )
    emb = embed("hf-hub:test/vit", synth_folder, tmp_path / "emb", batch_size=8, progress=False, device="cpu")
    build_index(emb, progress=False)
    model = json.loads((emb / "model.json").read_text())
    info = json.loads((emb / "embed.json").read_text())
    assert model["source"]["name"] == "hf-hub:test/vit" and model["source"]["revision"] == REVISION
    assert model["architecture"] == "vit_tiny_patch16_224" and model["input_size"] == 32
    assert model["mean"] == [0.5] * 3 and model["std"] == [0.2] * 3 and model["random_init"] is False
    assert info["format_version"] == 2 and info["model"]["path"] == "backbone"  # relative: inside the folder
    assert json.loads((emb / "index.faiss.json").read_text())["source"]["name"] == "hf-hub:test/vit"
    enc = Encoder.load(emb / "backbone", device="cpu")
    for key, value in enc.module.state_dict().items():
        assert np.array_equal(value.numpy(), saved[key].numpy()), key
    image, stored = _first_cell(emb)
    got = search.query([image], emb, k=1, device="cpu")
    assert got[0]["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    meta = json.loads((emb / "index.faiss.json").read_text()) | {"index_path": str(emb / "index.faiss")}
    queried = search._embed_images(
        [(str(image), Image.open(image).convert("RGB"))], str(emb / "backbone"), meta, "cpu", 0
    )
    state = load_state(emb, device="cpu", threads=1)
    served = state.embed(Image.open(image).convert("RGB"))
    np.testing.assert_allclose(queried[0], stored, rtol=1e-5, atol=1e-5)  # batch of 8 vs 1
    # one path; serve sets its own torch thread count, so float sums may differ in the last bits
    np.testing.assert_allclose(served[0], queried[0], rtol=1e-5, atol=1e-5)
    # serve --model: the same model given from outside the folder; another model is refused
    assert (
        load_state(emb, device="cpu", threads=1, model="hf-hub:test/vit").model_meta["weights_sha256"]
        == model["weights_sha256"]
    )
    from ssl_cyto.serve.errors import ServeError

    with pytest.raises(ServeError, match="not the model of this index"):
        load_state(emb, device="cpu", threads=1, model="tiny_cnn")
    with pytest.raises(ModelMismatchError, match="not the model of this index"):
        search.query([image], emb, k=1, model="tiny_cnn", device="cpu")


def test_copied_folder_keeps_its_in_folder_backbone(synth_folder: Path, tmp_path: Path) -> None:
    from ssl_cyto.embedding.model_spec import load_model
    from ssl_cyto.retrieval import search
    from ssl_cyto.serve.state import load_state

    original = tmp_path / "emb"
    load_model("tiny_cnn", original / "mine", seed=5)  # a backbone folder kept inside the embedding folder
    embed(original / "mine", synth_folder, original, batch_size=8, progress=False, device="cpu")
    assert json.loads((original / "embed.json").read_text())["model"]["path"] == "mine"
    outside = tmp_path / "outside"
    load_model("tiny_cnn", outside, seed=6)
    other = embed(outside, synth_folder, tmp_path / "emb_out", batch_size=8, progress=False, device="cpu")
    assert json.loads((other / "embed.json").read_text())["model"]["path"] == str(outside.resolve())
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    build_index(copy, progress=False)
    image, _ = _first_cell(copy)
    assert search.query([image], copy, k=1, device="cpu")[0]["neighbours"][0]["similarity"] == pytest.approx(
        1.0, abs=1e-5
    )
    assert load_state(copy, device="cpu", threads=1).model_spec == str(copy / "mine")
