"""Backbone folders: save/load round trip with model.json, tampered weights, the eval transform."""

from __future__ import annotations

import json

import pytest
import torch

from ssl_cyto.formats.model_json import MODEL_JSON_KEYS
from ssl_cyto.models.factory import BackboneError, build_backbone
from ssl_cyto.models.state import state_sha256
from ssl_cyto.models.weights import eval_transform_from_meta, load_backbone_folder, save_backbone


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    module, dim = build_backbone("tiny_cnn", width=8, depth=3)
    module.eval()
    meta = {
        "architecture": "tiny_cnn",
        "backbone_kwargs": {"width": 8, "depth": 3},
        "input_size": 32,
        "seed": 3,
    }
    out = save_backbone(module, tmp_path / "bb", meta)
    info = json.loads((out / "model.json").read_text())
    assert set(info) == set(MODEL_JSON_KEYS)
    assert info["embed_dim"] == dim and info["input_size"] == 32 and info["seed"] == 3
    import hashlib

    assert info["weights_sha256"] == hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()
    x = torch.rand(3, 3, 32, 32)
    for spec in (out, out / "model.json"):
        loaded, lmeta = load_backbone_folder(str(spec))
        assert lmeta["weights_sha256"] == info["weights_sha256"]
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), module(x))
    # a re-save of the loaded weights hashes identically
    again = save_backbone(loaded, tmp_path / "bb2", lmeta)
    assert json.loads((again / "model.json").read_text())["weights_sha256"] == info["weights_sha256"]


def test_tampered_weights_are_refused(tmp_path):
    module, _ = build_backbone("tiny_cnn", width=4, depth=2)
    out = save_backbone(
        module, tmp_path / "bb", {"architecture": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}}
    )
    other, _ = build_backbone("tiny_cnn", width=4, depth=2)
    torch.save(other.state_dict(), out / "weights.pt")
    with pytest.raises(BackboneError, match="sha256"):
        load_backbone_folder(str(out))
    with pytest.raises(BackboneError, match="model.json missing"):
        load_backbone_folder(str(tmp_path))


def test_state_sha256_is_the_hash_save_backbone_records(tmp_path):
    module, _ = build_backbone("tiny_cnn", width=4, depth=2)
    out = save_backbone(module, tmp_path / "bb", {"architecture": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}})
    assert json.loads((out / "model.json").read_text())["weights_sha256"] == state_sha256(module)


def test_eval_transform_from_meta():
    from PIL import Image

    t = eval_transform_from_meta({"input_size": 24, "mean": [0, 0, 0], "std": [1, 1, 1]})
    x = t(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert x.shape == (3, 24, 24)
    assert torch.allclose(x[0], torch.ones(24, 24)) and float(x[1:].abs().max()) == 0.0
    with pytest.raises(BackboneError, match="input_size"):
        eval_transform_from_meta({"mean": [0, 0, 0]})
