"""DINO clips as the paper's code does: each student gradient to norm ``clip_grad`` on its own, then
the last layer's gradient is dropped during the ``freeze_last_layer`` epochs."""

from __future__ import annotations

import torch

from ssl_cyto.tasks.dino import DINO
from tests.tasks.harness import DINO_TINY


def _with_grads(task: DINO) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    grads = {}
    for i, (name, p) in enumerate(task.named_parameters()):
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g) * (0.01 if i % 3 == 0 else 10.0)  # some below the clip
            grads[name] = p.grad.clone()
    return grads


def test_per_parameter_clip_then_cancel_matches_closed_form() -> None:
    task = DINO(**DINO_TINY, clip_grad=3.0, freeze_last_layer=1)
    grads = _with_grads(task)
    task.configure_gradient_clipping(torch.optim.SGD(task.parameters(), lr=0.1))  # epoch 0: frozen
    small = 0
    for name, p in task.named_parameters():
        if name not in grads:
            continue
        if "last_layer" in name and name.startswith("student_head."):
            assert p.grad is None or not p.grad.any(), name
            continue
        norm = float(grads[name].double().norm())
        expected = grads[name].double() * min(1.0, 3.0 / (norm + 1e-6))
        small += norm < 3.0
        torch.testing.assert_close(p.grad.double(), expected, rtol=1e-6, atol=1e-9)
        assert float(p.grad.norm()) <= 3.0 + 1e-4
    assert small > 0  # some gradients were below the clip and left as they were


def test_global_mode_clips_the_joint_norm() -> None:
    task = DINO(**DINO_TINY, clip_grad=3.0, clip_mode="global", freeze_last_layer=0)
    grads = _with_grads(task)
    total = float(torch.cat([g.double().flatten() for g in grads.values()]).norm())
    task.configure_gradient_clipping(torch.optim.SGD(task.parameters(), lr=0.1))
    joint = float(
        torch.cat([p.grad.double().flatten() for p in task.parameters() if p.grad is not None]).norm()
    )
    assert total > 3.0 and abs(joint - 3.0) < 1e-3
