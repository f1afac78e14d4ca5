"""DINO: the wrapped loss and centre against a direct computation, the head, the teacher EMA, the
frozen last layer, the state dict, on-device augmentation and the exported teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_cyto.models.state import state_sha256
from ssl_cyto.models.weights import load_backbone_folder, save_backbone
from ssl_cyto.tasks import DINO
from ssl_cyto.training.export import backbone_from_checkpoint
from tests.tasks.harness import DINO_TINY, fit, snapshot, views


def dino_loss_direct(t_out, s_out, center, t_temp, s_temp):
    total, terms = 0.0, 0
    for i, t in enumerate(t_out):
        p = F.softmax((t - center) / t_temp, dim=-1)
        for j, s in enumerate(s_out):
            if i == j:
                continue
            total = total + (-(p * F.log_softmax(s / s_temp, dim=-1)).sum(-1)).mean()
            terms += 1
    return total / terms


def test_dino_loss_and_centre_match_direct_computation():
    from lightly.loss import DINOLoss

    torch.manual_seed(0)
    loss_fn = DINOLoss(output_dim=11, teacher_temp=0.05, student_temp=0.1, center_momentum=0.8)
    loss_fn.center.copy_(torch.randn(1, 1, 11))
    c0 = loss_fn.center.clone()
    t_out = [torch.randn(4, 11) for _ in range(2)]
    s_out = [torch.randn(4, 11) for _ in range(4)]
    got = loss_fn(t_out, s_out, teacher_temp=0.05)
    want = dino_loss_direct(t_out, s_out, c0.view(1, 11), 0.05, 0.1)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    new_c = 0.8 * c0 + 0.2 * torch.cat(t_out).mean(0).view(1, 1, 11)
    torch.testing.assert_close(loss_fn.center, new_c)


def test_dino_head_matches_hand_written_forward():
    from lightly.models.modules.heads import DINOProjectionHead

    torch.manual_seed(0)
    x = torch.randn(6, 10)
    d = DINOProjectionHead(10, 12, 4, 9)
    mlp = d.layers(x)
    v = d.last_layer.weight_v
    want = F.normalize(mlp, dim=-1) @ (v / v.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(d(x), want)


def test_dino_step_teacher_is_ema_of_student():
    torch.manual_seed(0)
    task = DINO(**DINO_TINY, optimizer="sgd", lr=10.0, warmup_steps=0, freeze_last_layer=0)
    student0 = snapshot(task.backbone)
    teacher0 = snapshot(task.teacher_backbone)
    for k in student0:
        assert torch.equal(student0[k], teacher0[k])
    centre0 = task.criterion.center.clone()
    fit(task, views(2, 2, local=8))
    student1 = snapshot(task.backbone)
    teacher1 = snapshot(task.teacher_backbone)
    m = 0.996  # cosine schedule 0.996 -> 1 at step 0 of 3
    changed = [k for k in student0 if not torch.equal(student0[k], student1[k])]
    assert changed
    for k in student0:
        torch.testing.assert_close(teacher1[k], m * teacher0[k] + (1 - m) * student1[k])
    assert not torch.equal(task.criterion.center, centre0)
    assert task.export_backbone() is task.teacher_backbone


def test_dino_freezes_last_layer_in_first_epoch():
    torch.manual_seed(0)
    task = DINO(**DINO_TINY, optimizer="sgd", lr=10.0, warmup_steps=0, freeze_last_layer=1)
    v0 = task.student_head.last_layer.weight_v.detach().clone()
    fit(task, views(2, 2, local=8))
    assert torch.equal(task.student_head.last_layer.weight_v, v0)


def test_dino_state_dict_holds_teacher_and_centre():
    task = DINO(**DINO_TINY)
    task.criterion.center.fill_(0.25)
    sd = task.state_dict()
    assert "criterion.center" in sd
    assert any(k.startswith("teacher_backbone.") for k in sd)
    assert any(k.startswith("teacher_head.") for k in sd)
    fresh = DINO(**DINO_TINY)
    fresh.load_state_dict(sd)
    assert float(fresh.criterion.center.mean()) == pytest.approx(0.25)


def test_augment_on_device_path_trains():
    pytest.importorskip("kornia")
    from PIL import Image

    torch.manual_seed(0)
    task = DINO(**DINO_TINY, augment_on_device=True, optimizer="sgd", lr=1.0, warmup_steps=0)
    decoded = task.train_transform(Image.new("RGB", (40, 30), (200, 150, 180)))
    assert len(decoded) == 1 and decoded[0].dtype == torch.uint8 and decoded[0].shape == (3, 16, 16)
    before = snapshot(task.backbone)
    batch = [torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)]
    fit(task, batch)
    assert any(not torch.equal(before[k], v) for k, v in snapshot(task.backbone).items())


def test_checkpoint_exports_teacher(tmp_path):
    torch.manual_seed(0)
    task = DINO(**DINO_TINY, optimizer="sgd", lr=10.0, warmup_steps=0, channels_last=True)
    trainer = fit(task, views(2, 2, local=8))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    module, meta = backbone_from_checkpoint(ckpt)
    assert meta["architecture"] == "tiny_cnn" and meta["method"] == "dino"
    for k, v in task.teacher_backbone.state_dict().items():
        torch.testing.assert_close(module.state_dict()[k], v)
    out = save_backbone(module, tmp_path / "bb", meta)
    _, saved = load_backbone_folder(out)
    assert saved["weights_sha256"] == state_sha256(module)


def test_teacher_has_no_drop_path_while_student_keeps_it():
    """A student built with stochastic depth keeps it; its EMA teacher gets none (DINO's and DINOv2's
    teachers are built without drop path), so the teacher's targets are deterministic in train mode."""
    from timm.layers import DropPath

    torch.manual_seed(0)
    task = DINO(
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"drop_path_rate": 0.5, "depth": 2, "img_size": 32, "patch_size": 8},
        input_size=32, head_hidden_dim=32, head_bottleneck_dim=16, head_output_dim=64,
    )
    task.train()
    assert any(isinstance(m, DropPath) for m in task.backbone.modules())
    assert not any(isinstance(m, DropPath) for m in task.teacher_backbone.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(task.teacher_backbone(x), task.teacher_backbone(x))
        assert not torch.equal(task.backbone(x), task.backbone(x))
