"""Whether a backbone is a ViT is timm's answer (``fixed_input_size``), and the DINO task builds each
family so that its local crops go through: the smallest DeiT, EVA-02, BEiT and Swin, and ResNet-18,
random weights (never downloaded), one DINO forward over global and local views."""

from __future__ import annotations

import pytest
import torch

from ssl_cyto.models.factory import build_backbone, default_input_size, is_vit, takes_any_size
from ssl_cyto.tasks.dino import DINO

INPUT = 224  # the ViT configs' global size (configs/dino_vits16.yaml); DINO's local crops are 96 px
HEAD = {"head_hidden_dim": 16, "head_bottleneck_dim": 8, "head_output_dim": 16, "n_local_crops": 2}
# (name, backbone_kwargs shrinking the family's smallest model for a CPU test, local size DINO picks)
FAMILIES = [
    ("deit_tiny_patch16_224", {}, 96),
    ("eva02_tiny_patch14_224", {}, 96),  # patch 14: 96 px is padded (dynamic_img_pad)
    ("beit_base_patch16_224", {"depth": 1, "embed_dim": 96, "num_heads": 2}, INPUT),  # no dynamic size in timm
    ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}, 96),
    ("resnet18", {}, 96),
]


@pytest.mark.parametrize(("name", "kwargs", "local"), FAMILIES, ids=[f[0].split("_")[0] for f in FAMILIES])
def test_dino_forward_at_local_crop_size(name: str, kwargs: dict, local: int) -> None:
    assert is_vit(name) == (name != "resnet18")
    torch.manual_seed(0)
    task = DINO(backbone=name, backbone_kwargs=kwargs, input_size=INPUT, **HEAD).eval()
    assert task.local_size == local
    assert takes_any_size(name, task.backbone) == (local != INPUT)
    sizes = [spec.size for spec in task.view_specs()]
    assert sizes == [INPUT, INPUT, local, local]
    views = [torch.rand(1, 3, s, s) for s in sizes]
    with torch.no_grad():
        local_features = task(views[-1])
        loss = task.compute_loss(views, teacher_temp=0.04)
    assert local_features.shape == (1, task.embed_dim)
    assert torch.isfinite(loss)


def test_vit_input_size_and_refusals() -> None:
    assert default_input_size("deit_tiny_patch16_224") == 224
    assert default_input_size("eva02_tiny_patch14_336") == 336  # timm's own size, not a name prefix rule
    module, _ = build_backbone("deit_tiny_patch16_224", img_size=64)
    assert module.dynamic_img_size
    with pytest.raises(ValueError, match="local_size"):
        DINO(backbone="beit_base_patch16_224", backbone_kwargs={"depth": 1}, input_size=INPUT, local_size=96, **HEAD)
