"""MomentumTask: a toy momentum method (BYOL-like, defined here) trained 3 steps; after every step its
EMA teacher equals ``m * teacher + (1 - m) * student`` in closed form, with ``m`` on the cosine
schedule from ``momentum_teacher`` to 1."""

from __future__ import annotations

import math
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from ssl_cyto.tasks.momentum import MomentumTask, frozen_copy
from ssl_cyto.transforms import ViewSpec
from tests.tasks.harness import TINY, snapshot, views

M0 = 0.9
STEPS = 3


class ToyMomentum(MomentumTask):
    """Student backbone + head regresses the teacher's normalised output of the other view."""

    method = "toy"

    def __init__(self, out_dim: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head = nn.Linear(self.embed_dim, out_dim)
        self.teacher_head = frozen_copy(self.head)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [*super().momentum_pairs(), (self.head, self.teacher_head)]

    def view_specs(self) -> list[ViewSpec]:
        return [ViewSpec(self.input_size)] * 2

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        p = F.normalize(self.head(self(batch[0])), dim=1)
        with torch.no_grad():
            z = F.normalize(self.teacher_head(self.teacher_backbone(batch[1])), dim=1)
        loss = (p - z).pow(2).sum(1).mean()
        self.log_loss(loss, batch[0].shape[0])
        return loss


class _Views(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.batch = views(2, 0, b=4 * STEPS)

    def __len__(self) -> int:
        return 4 * STEPS

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return [v[i] for v in self.batch]


class _Record(pl.Callback):
    """Parameters of the student and teacher before and after every step, and the step's momentum."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def _pairs(self, module: ToyMomentum) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "student": {**snapshot(module.backbone), **{f"h.{k}": v for k, v in snapshot(module.head).items()}},
            "teacher": {
                **snapshot(module.teacher_backbone),
                **{f"h.{k}": v for k, v in snapshot(module.teacher_head).items()},
            },
        }

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.steps.append({"before": self._pairs(pl_module), "step": trainer.global_step})

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self.steps[-1].update(after=self._pairs(pl_module), m=pl_module.last_momentum)


def test_teacher_follows_closed_form_ema_for_three_steps() -> None:
    torch.manual_seed(0)
    task = ToyMomentum(**TINY, momentum_teacher=M0, optimizer="sgd", lr=50.0, warmup_steps=0)
    assert all(torch.equal(v, snapshot(task.teacher_backbone)[k]) for k, v in snapshot(task.backbone).items())
    assert not any(p.requires_grad for p in task.teacher_backbone.parameters())
    record = _Record()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        callbacks=[record],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, torch.utils.data.DataLoader(_Views(), batch_size=4))
    assert [s["step"] for s in record.steps] == list(range(STEPS))
    for s in record.steps:
        # cosine from M0 to 1 over the 3-step run, at the step the update happens
        m = 1 - (1 - M0) * (1 + math.cos(math.pi * s["step"] / STEPS)) / 2
        assert s["m"] == pytest.approx(m, rel=1e-6)
        student, before, after = s["after"]["student"], s["before"]["teacher"], s["after"]["teacher"]
        assert any(not torch.equal(s["before"]["student"][k], student[k]) for k in student)  # it trained
        for k in after:
            torch.testing.assert_close(after[k], m * before[k] + (1 - m) * student[k], rtol=1e-6, atol=1e-7)
    assert float(trainer.logged_metrics["train/teacher_momentum"]) == pytest.approx(record.steps[-1]["m"])
