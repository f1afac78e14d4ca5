"""Sinkhorn-Knopp teacher targets (DINOv2) against DINOv2's own code, and the loss built on them."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks import DINO
from ssl_cyto.tasks.sinkhorn_loss import SinkhornDINOLoss, sinkhorn_knopp


def dinov2_reference(
    teacher_output: torch.Tensor, teacher_temp: float, n_iterations: int = 3
) -> torch.Tensor:
    """facebookresearch/dinov2 ``SinkhornKnoppTeacher.forward`` on one process, as published."""
    q = torch.exp(teacher_output / teacher_temp).t()
    b, k = q.shape[1], q.shape[0]
    q /= torch.sum(q)
    for _ in range(n_iterations):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= k
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def test_matches_dinov2_and_balances_prototypes() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(48, 16, generator=g) * 0.5
    ours = sinkhorn_knopp(logits, 0.1)
    ref = dinov2_reference(logits.double(), 0.1).float()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.sum(1), torch.ones(48))  # each sample's targets: a distribution
    # the iterations converge to prototypes used equally over the batch (3 only approach it)
    balanced = sinkhorn_knopp(logits, 0.1, n_iterations=50)
    torch.testing.assert_close(balanced.sum(0), torch.full((16,), 48 / 16), rtol=1e-3, atol=0)
    spread = lambda q: float(q.sum(0).std())  # noqa: E731
    assert spread(balanced) < spread(ours) < spread(torch.softmax(logits / 0.1, dim=1))


def test_stable_where_exp_overflows() -> None:
    logits = torch.tensor([[30.0, 0.0], [0.0, 30.0]])  # exp(30 / 0.04) is inf in float32
    q = sinkhorn_knopp(logits, 0.04)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q, torch.eye(2), atol=1e-6, rtol=0)


def test_loss_closed_form_and_collapse_is_not_a_minimum() -> None:
    loss = SinkhornDINOLoss(
        output_dim=4, teacher_temp=0.1, warmup_teacher_temp=0.1, warmup_teacher_temp_epochs=0
    )
    g = torch.Generator().manual_seed(1)
    t = [torch.randn(6, 4, generator=g) for _ in range(2)]
    s = [torch.randn(6, 4, generator=g, requires_grad=True) for _ in range(3)]
    value = loss(t, s, teacher_temp=0.1)
    q = sinkhorn_knopp(torch.cat(t), 0.1).reshape(2, 6, 4)
    logp = [torch.log_softmax(x / 0.1, dim=-1) for x in s]
    pairs = [(i, j) for i in range(2) for j in range(3) if i != j]
    expected = sum(-(q[i] * logp[j]).sum(-1).mean() for i, j in pairs) / len(pairs)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in s)
    # a constant teacher (collapse) still gives balanced targets: every prototype gets 1/K
    flat = sinkhorn_knopp(torch.zeros(8, 4), 0.04)
    torch.testing.assert_close(flat, torch.full((8, 4), 0.25))
    assert math.isfinite(float(value.detach()))


def test_bf16_autocast_gives_the_float32_loss() -> None:
    loss = SinkhornDINOLoss(output_dim=8, warmup_teacher_temp_epochs=0)
    g = torch.Generator().manual_seed(2)
    t = [torch.randn(4, 8, generator=g) for _ in range(2)]
    s = [torch.randn(4, 8, generator=g) for _ in range(2)]
    ref = loss(t, s, teacher_temp=0.04)  # the centre moves, but Sinkhorn targets do not read it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(t, s, teacher_temp=0.04)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, ref, rtol=1e-6, atol=0)


def test_dino_task_selects_the_loss() -> None:
    kw = dict(
        backbone="tiny_cnn",
        backbone_kwargs={"width": 4, "depth": 2},
        input_size=32,
        n_local_crops=0,
        head_hidden_dim=16,
        head_bottleneck_dim=8,
        head_output_dim=16,
    )
    assert isinstance(DINO(centering="sinkhorn", **kw).criterion, SinkhornDINOLoss)
    assert not isinstance(DINO(**kw).criterion, SinkhornDINOLoss)
    with pytest.raises(InputError, match="centering"):
        DINO(centering="median", **kw)  # type: ignore[arg-type]
