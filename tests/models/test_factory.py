"""Backbone factory: output sizes, multi-scale pooling, no downloads, bad options, local weights."""

from __future__ import annotations

import pytest
import torch

from ssl_cyto.models.factory import BackboneError, backbone_norm, build_backbone, default_input_size, is_vit
from ssl_cyto.models.registry import BACKBONES, backbone_names
from ssl_cyto.models.weights import save_backbone


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


def test_colour_hist_backbone():
    module, dim = build_backbone("colour_hist")
    out = module(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim)
    assert backbone_norm("colour_hist") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_registry_names_and_input_sizes():
    assert backbone_names() == list(BACKBONES) and {"tiny_cnn", "colour_hist"} <= set(BACKBONES)
    assert default_input_size("tiny_cnn") == 96 and default_input_size("resnet18") == 96
    assert default_input_size("vit_tiny_patch16_224") == 224
    assert default_input_size("vit_tiny_patch16_224", {"img_size": 64}) == 64
    assert not is_vit("tiny_cnn") and not is_vit("no_such_net")
