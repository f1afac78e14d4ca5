"""SimCLR and DINO tasks: reference checks of the wrapped losses/heads, a training step on random
data, the DINO teacher EMA, schedules, state dict contents and the exported backbone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ssl_cyto.tasks import DINO, SimCLR

TINY = {"backbone": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}, "input_size": 16}
DINO_TINY = {
    **TINY,
    "n_local_crops": 2,
    "head_hidden_dim": 16,
    "head_bottleneck_dim": 8,
    "head_output_dim": 32,
}


# ---- reference implementations ------------------------------------------------------------------
def ntxent_numpy(z0: np.ndarray, z1: np.ndarray, temperature: float) -> np.ndarray:
    """Per-row NT-Xent (Chen et al. 2020, eq. 1) over the 2N views; returns 2N losses."""
    z = np.concatenate([z0, z1]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z0)
    sim = z @ z.T / temperature
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        losses.append(-sim[i, j] + np.log(np.exp(sim[i, others]).sum()))
    return np.array(losses)


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


def test_ntxent_matches_closed_form():
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for temp in (0.1, 0.5):
        ours = float(NTXentLoss(temperature=temp, gather_distributed=True)(z0, z1))
        assert ours == pytest.approx(ntxent_numpy(z0.numpy(), z1.numpy(), temp).mean(), rel=1e-5)


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


def test_heads_match_hand_written_forward():
    from lightly.models.modules.heads import DINOProjectionHead, SimCLRProjectionHead

    torch.manual_seed(0)
    x = torch.randn(6, 10)
    h = SimCLRProjectionHead(10, 12, 5).eval()
    lin1, bn1, _, lin2, bn2 = h.layers
    torch.testing.assert_close(h(x), bn2(lin2(F.relu(bn1(lin1(x))))))
    d = DINOProjectionHead(10, 12, 4, 9)
    mlp = d.layers(x)
    v = d.last_layer.weight_v
    want = F.normalize(mlp, dim=-1) @ (v / v.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(d(x), want)


# ---- training ------------------------------------------------------------------------------------
def views(n_global: int, n_local: int, b: int = 8, size: int = 16, local: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = [torch.randn(b, 3, size, size, generator=g) for _ in range(n_global)]
    return out + [torch.randn(b, 3, local, local, generator=g) for _ in range(n_local)]


class _Batches(torch.utils.data.Dataset):
    def __init__(self, batch: list[torch.Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 3 * 4  # three batches of 4: schedules see a 3-step run

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return [v[i % len(v)] for v in self.batch]


class _StopAfterFirstStep(pl.Callback):
    def on_train_batch_end(self, trainer, *args) -> None:
        trainer.should_stop = True


def fit(task: pl.LightningModule, batch: list[torch.Tensor]) -> pl.Trainer:
    """One optimiser step of a run planned for 3 steps (1 epoch of 3 batches)."""
    loader = torch.utils.data.DataLoader(_Batches(batch), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[_StopAfterFirstStep()],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, loader)
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_simclr_step_changes_weights_and_logs():
    torch.manual_seed(0)
    task = SimCLR(**TINY, projection_hidden_dim=16, projection_dim=8, optimizer="sgd", lr=1.0, warmup_steps=0)
    before = snapshot(task.backbone)
    trainer = fit(task, views(2, 0))
    after = snapshot(task.backbone)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert math.isfinite(float(trainer.logged_metrics["train/loss_step"]))
    # linear rule: batch 4 on one device -> lr * 4 / 256 (cosine at step 0 is the peak)
    assert float(trainer.logged_metrics["train/lr"]) == pytest.approx(1.0 * 4 / 256)


def test_lr_schedule_warmup_then_cosine():
    task = SimCLR(**TINY, lr=0.4, warmup_steps=10, lr_scaling="linear", min_lr_ratio=0.1)

    class T:
        estimated_stepping_batches = 110
        world_size, accumulate_grad_batches, max_epochs, num_training_batches = 2, 1, 5, 22

    task.trainer = T()  # type: ignore[assignment]
    peak = 0.4 * (32 * 2) / 256
    assert task.lr_at(0, 32) == pytest.approx(peak / 10)
    assert task.lr_at(9, 32) == pytest.approx(peak)
    assert task.lr_at(60, 32) == pytest.approx(peak * (0.1 + 0.9 * 0.5))
    assert task.lr_at(110, 32) == pytest.approx(peak * 0.1)
    # warm-up in epochs follows the loader length (22 batches per epoch)
    task2 = SimCLR(**TINY, lr=0.4, warmup_epochs=0.5)
    task2.trainer = T()  # type: ignore[assignment]
    assert task2.lr_at(10, 32) == pytest.approx(peak)
    assert task2.lr_at(9, 32) == pytest.approx(peak * 10 / 11)


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


def test_transforms_and_export_meta():
    from PIL import Image

    task = SimCLR(**TINY)
    img = Image.new("RGB", (40, 30), (200, 150, 180))
    vs = task.train_transform(img)
    assert len(vs) == 2 and vs[0].shape == (3, 16, 16)
    assert task.eval_transform(img).shape == (3, 16, 16)
    meta = task.export_meta()
    assert meta["architecture"] == "tiny_cnn" and meta["embed_dim"] == 8 and meta["method"] == "simclr"
    dino = DINO(**DINO_TINY)
    assert [tuple(v.shape) for v in dino.train_transform(img)] == [(3, 16, 16)] * 2 + [(3, 16, 16)] * 2


def test_checkpoint_exports_teacher_through_load_backbone(tmp_path):
    pytest.importorskip("ssl_cyto.export")
    from ssl_cyto.models.backbones import load_backbone, save_backbone

    torch.manual_seed(0)
    task = DINO(**DINO_TINY, optimizer="sgd", lr=10.0, warmup_steps=0, channels_last=True)
    trainer = fit(task, views(2, 2, local=8))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    module, meta = load_backbone(str(ckpt))
    assert meta["architecture"] == "tiny_cnn" and meta["method"] == "dino"
    for k, v in task.teacher_backbone.state_dict().items():
        torch.testing.assert_close(module.state_dict()[k], v)
    out = save_backbone(module, tmp_path / "bb", meta)
    _, saved = load_backbone(str(out))
    assert saved["weights_sha256"] == meta["weights_sha256"]


def test_time_capped_run_decays_lr_by_wall_time():
    """With trainer.max_time and an open-ended step count, the cosine follows the wall-time fraction."""
    from pytorch_lightning.callbacks import Timer

    task = SimCLR(**TINY, lr=0.4, warmup_steps=10, lr_scaling="none", min_lr_ratio=0.0)

    class FakeTimer(Timer):
        def __init__(self, elapsed: float, total: float) -> None:
            super().__init__(duration={"seconds": total})
            self._e, self._t = elapsed, total

        def time_elapsed(self, stage="train"):  # type: ignore[override]
            return self._e

        def time_remaining(self, stage="train"):  # type: ignore[override]
            return self._t - self._e

    class T:
        estimated_stepping_batches = float("inf")  # max_epochs huge, max_steps unset
        world_size, accumulate_grad_batches, max_epochs, num_training_batches = 1, 1, 1000, 20
        callbacks: list = []

    task.trainer = T()  # type: ignore[assignment]
    T.callbacks = [FakeTimer(elapsed=50.0, total=100.0)]
    assert task.lr_at(500, 32) == pytest.approx(0.4 * 0.5)  # half the time: cosine at its midpoint
    T.callbacks = [FakeTimer(elapsed=100.0, total=100.0)]
    assert task.lr_at(600, 32) == pytest.approx(0.0, abs=1e-9)
    T.callbacks = []
    assert task.lr_at(500, 32) > 0.39  # no timer: 10**6-step horizon, still near the peak
