"""SimCLR: the wrapped NT-Xent loss and head against reference implementations, a training step,
the views and the export meta."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_cyto.tasks import DINO, SimCLR
from tests.tasks.harness import DINO_TINY, TINY, fit, snapshot, views


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


def test_ntxent_matches_closed_form():
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for temp in (0.1, 0.5):
        ours = float(NTXentLoss(temperature=temp, gather_distributed=True)(z0, z1))
        assert ours == pytest.approx(ntxent_numpy(z0.numpy(), z1.numpy(), temp).mean(), rel=1e-5)


def test_projection_head_matches_hand_written_forward():
    from lightly.models.modules.heads import SimCLRProjectionHead

    torch.manual_seed(0)
    x = torch.randn(6, 10)
    h = SimCLRProjectionHead(10, 12, 5).eval()
    lin1, bn1, _, lin2, bn2 = h.layers
    torch.testing.assert_close(h(x), bn2(lin2(F.relu(bn1(lin1(x))))))


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
