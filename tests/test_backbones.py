"""Backbones: output sizes, multi-scale pooling, no downloads, save/load round trip with model.json."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ssl_cyto.models.backbones import (
    MODEL_JSON_KEYS,
    BackboneError,
    build_backbone,
    eval_transform_from_meta,
    load_backbone,
    save_backbone,
)


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "dim"),
    [
        ("tiny_cnn", {"width": 8, "depth": 3}, 32, 32),
        ("tiny_cnn", {"width": 8, "depth": 3, "pool": "multiscale", "pool_stages": 2}, 32, 16 + 32),
        ("resnet18", {}, 32, 512),
        ("resnet18", {"pool": "multiscale", "pool_stages": 3}, 32, 128 + 256 + 512),
        ("vit_tiny_patch16_224", {"img_size": 32}, 32, 192),
    ],
)
def test_output_dims(name, kwargs, size, dim):
    module, d = build_backbone(name, **kwargs)
    assert d == dim
    module.eval()
    with torch.no_grad():
        out = module(torch.rand(2, 3, size, size))
    assert out.shape == (2, dim)


def test_vit_accepts_local_crop_sizes():
    module, d = build_backbone("vit_tiny_patch16_224", img_size=64)
    with torch.no_grad():
        assert module.eval()(torch.rand(1, 3, 32, 32)).shape == (1, d)


def test_bad_names_and_options():
    with pytest.raises(BackboneError, match="unknown backbone"):
        build_backbone("no_such_net")
    with pytest.raises(BackboneError, match="tiny_cnn takes only"):
        build_backbone("tiny_cnn", img_size=32)
    with pytest.raises(BackboneError, match="CNNs only"):
        build_backbone("vit_tiny_patch16_224", img_size=32, pool="multiscale")
    with pytest.raises(BackboneError, match="pool must be"):
        build_backbone("resnet18", pool="max")


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
        loaded, lmeta = load_backbone(str(spec))
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
        load_backbone(str(out))
    with pytest.raises(BackboneError, match="model.json missing"):
        load_backbone(str(tmp_path))


def test_random_init_by_name_is_seeded_and_hash_matches_saved(tmp_path):
    a, meta_a = load_backbone("tiny_cnn", seed=1)
    b, meta_b = load_backbone("tiny_cnn", seed=1)
    c, meta_c = load_backbone("tiny_cnn", seed=2)
    assert meta_a["random_init"] is True
    assert meta_a["weights_sha256"] == meta_b["weights_sha256"] != meta_c["weights_sha256"]
    out = save_backbone(a, tmp_path / "rand", meta_a)
    assert json.loads((out / "model.json").read_text())["weights_sha256"] == meta_a["weights_sha256"]


def test_checkpoint_path_starts_from_local_weights(tmp_path):
    src, _ = build_backbone("tiny_cnn", width=4, depth=2)
    out = save_backbone(
        src, tmp_path / "bb", {"architecture": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}}
    )
    # a Lightning-style checkpoint with backbone.* keys works too
    ckpt = tmp_path / "x.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in src.state_dict().items()}}, ckpt)
    for path in (out, out / "weights.pt", ckpt):
        dst, _ = build_backbone("tiny_cnn", width=4, depth=2, checkpoint_path=str(path))
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v)
    with pytest.raises(BackboneError, match="do not fit"):
        build_backbone("tiny_cnn", width=8, depth=2, checkpoint_path=str(out))


def test_eval_transform_from_meta():
    from PIL import Image

    t = eval_transform_from_meta({"input_size": 24, "mean": [0, 0, 0], "std": [1, 1, 1]})
    x = t(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert x.shape == (3, 24, 24)
    assert torch.allclose(x[0], torch.ones(24, 24)) and float(x[1:].abs().max()) == 0.0
    with pytest.raises(BackboneError, match="input_size"):
        eval_transform_from_meta({"mean": [0, 0, 0]})


@pytest.mark.skipif(
    importlib.util.find_spec("ssl_cyto.evaluation.baselines") is None,
    reason="ssl_cyto.evaluation.baselines not written yet",
)
def test_colour_hist_backbone():
    from ssl_cyto.models.backbones import backbone_norm

    module, dim = build_backbone("colour_hist")
    out = module(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim)
    assert backbone_norm("colour_hist") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
