"""The DINOv2 task: ViTs only, pretrained weights kept through the maskable wrapper, the loss against a
reference computation, a Lightning step, the shared-head option and layer-wise LR decay."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from lightly.models.modules import MaskedVisionTransformerTIMM

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks.dinov2 import DINOv2
from ssl_cyto.tasks.masked_vit import pooled, wrap_vit
from ssl_cyto.tasks.optim import vit_layer_id
from tests.tasks.harness import DINOV2_TINY, fit, snapshot, views
from tests.tasks.test_koleo_loss import koleo_formula
from tests.tasks.test_sinkhorn_loss import dinov2_reference


def _tiny(**over: object) -> DINOv2:
    torch.manual_seed(0)
    task = DINOv2(**{**DINOV2_TINY, **over})  # type: ignore[arg-type]
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    return task


def _fixed_masks(n: int) -> torch.Tensor:
    m = torch.zeros(n, 4, 4, dtype=torch.bool)
    m[0, :2, :2] = True
    m[n // 2 + 1, 1:3, 1:] = True
    return m


def _vit() -> torch.nn.Module:
    kw = DINOV2_TINY["backbone_kwargs"]
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, **kw)


@pytest.mark.parametrize("backbone", ["tiny_cnn", "resnet18"])
def test_a_cnn_is_refused_naming_vits_that_work(backbone: str) -> None:
    with pytest.raises(InputError, match=r"needs a Vision Transformer.*vit_small_patch14_dinov2"):
        DINOv2(backbone=backbone, input_size=16, head_hidden_dim=8, head_bottleneck_dim=4, head_output_dim=8)


def test_wrapping_keeps_every_weight_of_a_pretrained_vit() -> None:
    vit = _vit()
    with torch.no_grad():
        for p in vit.parameters():  # "released" weights: nothing like any initialisation
            p.copy_(torch.randn_like(p))
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    wrapped = wrap_vit(vit)
    after = wrapped.vit.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # lightly's defaults would have re-initialised the patch embedding and the position embedding
    MaskedVisionTransformerTIMM(vit=vit)
    assert not torch.equal(vit.patch_embed.proj.weight, before["patch_embed.proj.weight"])
    assert not torch.equal(vit.pos_embed, before["pos_embed"])


def test_student_and_teacher_start_at_the_given_weights(tmp_path: Path) -> None:
    vit = _vit()
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(torch.randn_like(p))
    path = tmp_path / "released.pt"
    torch.save(vit.state_dict(), path)
    task = _tiny(checkpoint_path=str(path))
    _ = task.student_encoder, task.teacher_encoder  # the wrappers are built
    for net in (task.backbone, task.teacher_backbone, task.export_backbone()):
        got = net.state_dict()
        assert all(torch.equal(got[k], v) for k, v in vit.state_dict().items())
    # the wrapper's unmasked encoding is the ViT's own feature, at global and local size
    for size in (16, 8):
        x = torch.randn(3, 3, size, size)
        torch.testing.assert_close(pooled(task.vit, task.student_encoder.encode(x)), task(x))
    assert task.export_meta()["method"] == "dinov2"


def test_masked_patches_are_hidden_from_the_student() -> None:
    task = _tiny()
    x = torch.randn(4, 3, 16, 16)
    masks = _fixed_masks(4)
    from ssl_cyto.tasks.masked_vit import token_mask

    tokens = task.student_encoder.encode(x, mask=token_mask(task.vit, masks))
    x2 = x.clone()
    pixel_mask = masks.repeat_interleave(4, 1).repeat_interleave(4, 2)  # 4 px patches
    x2[pixel_mask[:, None].expand_as(x2)] += 3.0  # change only the masked patches' pixels
    torch.testing.assert_close(task.student_encoder.encode(x2, mask=token_mask(task.vit, masks)), tokens)
    assert not torch.allclose(task.teacher_encoder.encode(x2), task.teacher_encoder.encode(x))


def test_loss_matches_a_reference_computation() -> None:
    task = _tiny(koleo_weight=0.1, ibot_weight=0.5)
    batch = views(2, 2, b=4, size=16, local=8)
    task.block_masks = lambda n, grid, device: _fixed_masks(n)  # type: ignore[method-assign]
    loss = task.compute_loss(batch, teacher_temp=0.05)

    x = torch.cat(batch[:2])
    masks = _fixed_masks(8).flatten(1)
    tok_mask = torch.cat([torch.zeros(8, 1, dtype=torch.bool), masks], dim=1)
    with torch.no_grad():
        t_tok = task.teacher_backbone.forward_features(x)  # the teacher: the plain ViT, unmasked
        s_tok = task.student_encoder.encode(x, mask=tok_mask)
        t_cls, s_cls = t_tok[:, 0], s_tok[:, 0]
        s_local = task.backbone(torch.cat(batch[2:]))
        # DINO: Sinkhorn targets of both teacher crops, every (teacher, student) crop pair but a crop with itself
        q = dinov2_reference(task.teacher_head(t_cls).double(), 0.05).float().chunk(2)
        s_out = list(task.student_head(s_cls).chunk(2)) + list(task.student_head(s_local).chunk(2))
        logp = [torch.log_softmax(s / 0.1, dim=-1) for s in s_out]
        pairs = [(i, j) for i in range(2) for j in range(4) if i != j]
        dino = sum(-(q[i] * logp[j]).sum(-1).mean() for i, j in pairs) / len(pairs)
        # iBOT: the masked patches only, separate heads
        qt = dinov2_reference(task.teacher_ibot_head(t_tok[:, 1:][masks]).double(), 0.05).float()
        ce = -(qt * torch.log_softmax(task.student_ibot_head(s_tok[:, 1:][masks]) / 0.1, dim=-1)).sum(-1)
        owner = masks.nonzero()[:, 0]
        ibot = sum(ce[owner == i].mean() for i in owner.unique()) / 8
        koleo = koleo_formula(s_cls[:4]) + koleo_formula(s_cls[4:])
    torch.testing.assert_close(loss.detach(), dino + 0.5 * ibot + 0.1 * koleo, rtol=1e-4, atol=1e-5)


def test_one_lightning_step_trains_student_mask_token_and_moves_teacher() -> None:
    torch.manual_seed(0)
    task = DINOv2(**DINOV2_TINY)
    teacher0, student0 = snapshot(task.teacher_backbone), snapshot(task.backbone)
    token0 = task.mask_token.detach().clone()
    trainer = fit(task, views(2, 2, b=8, size=16, local=8))
    metrics = trainer.callback_metrics
    assert {"train/dino_loss", "train/ibot_loss", "train/koleo_loss"} <= set(metrics)
    assert torch.isfinite(metrics["train/loss"])
    assert any(not torch.equal(student0[k], v) for k, v in snapshot(task.backbone).items())
    assert any(not torch.equal(teacher0[k], v) for k, v in snapshot(task.teacher_backbone).items())
    assert not torch.equal(task.mask_token.detach(), token0)
    assert all(not p.requires_grad for p in task.teacher_ibot_head.parameters())


def test_shared_patch_head_and_drop_path_on_the_student_only() -> None:
    task = _tiny(ibot_separate_head=False, drop_path_rate=0.3)
    assert not hasattr(task, "student_ibot_head")
    assert task.ibot_heads == (task.student_head, task.teacher_head)
    assert float(task.compute_loss(views(2, 2, b=4, size=16, local=8), teacher_temp=0.05)) > 0
    assert [b.drop_path1.drop_prob for b in task.vit.blocks] == [0.3, 0.3]
    assert all(isinstance(b.drop_path1, torch.nn.Identity) for b in task.teacher_vit.blocks)
    linear = _tiny(drop_path_rate=0.3, drop_path_uniform=False)
    assert isinstance(linear.vit.blocks[0].drop_path1, torch.nn.Identity)
    assert linear.vit.blocks[1].drop_path1.drop_prob == pytest.approx(0.3)


def test_layerwise_lr_decay_groups() -> None:
    assert [
        vit_layer_id(n, 12) for n in ("backbone.pos_embed", "mask_token", "backbone.blocks.3.mlp.fc1.weight")
    ] == [
        0,
        0,
        4,
    ]
    assert vit_layer_id("backbone.norm.weight", 12) == vit_layer_id("student_head.layers.0.weight", 12) == 13
    task = _tiny(layerwise_decay=0.5, patch_embed_lr_mult=0.2)
    opt = task.configure_optimizers()
    scale = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert scale[id(task.vit.blocks[1].mlp.fc1.weight)] == 0.5  # depth 2 of 3
    assert scale[id(task.vit.blocks[0].mlp.fc1.weight)] == 0.25
    assert scale[id(task.vit.pos_embed)] == 0.125 and scale[id(task.mask_token)] == 0.125
    assert scale[id(task.vit.patch_embed.proj.weight)] == pytest.approx(0.125 * 0.2)
    assert all(scale[id(p)] == 1.0 for p in task.student_head.parameters())  # heads: full LR
    n_trainable = sum(1 for p in task.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in opt.param_groups) == n_trainable
    # in training, each group runs at the scheduled LR times its scale
    task.log = DINOv2.log.__get__(task)  # type: ignore[method-assign]
    trainer = fit(task, views(2, 2, b=8, size=16, local=8))
    groups = trainer.optimizers[0].param_groups
    full = next(g["lr"] for g in groups if g["lr_scale"] == 1.0)
    assert full > 0 and all(g["lr"] == pytest.approx(full * g["lr_scale"]) for g in groups)


def test_last_layers_of_both_heads_frozen_during_the_first_epochs() -> None:
    task = _tiny(freeze_last_layer=1)
    task.trainer = type("T", (), {"current_epoch": 0})()  # type: ignore[assignment]
    task.compute_loss(views(2, 2, b=4, size=16, local=8), teacher_temp=0.05).backward()
    heads = (task.student_head, task.student_ibot_head)
    assert all(p.grad is not None for h in heads for p in h.last_layer.parameters())
    task.configure_gradient_clipping(torch.optim.SGD(task.parameters(), lr=0.1))
    assert all(p.grad is None for h in heads for p in h.last_layer.parameters())
    assert task.mask_token.grad is not None


def test_fit_model_dinov2_resolves_through_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from ssl_cyto.cli import main as cli_main

    assert cli_main(["fit", "--model", "dinov2", "--print_config"]) == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    assert model["class_path"] == "ssl_cyto.tasks.dinov2.DINOv2"
    assert (
        model["init_args"]["backbone"] == "vit_small_patch14_dinov2"
        and model["init_args"]["koleo_weight"] == 0.1
    )
