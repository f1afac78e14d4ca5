"""Callbacks: effective rank on known inputs, collapse detection, NaN guard keeps the last good ckpt.

(The leave-one-out kNN of OnlineKNN is tested with the kNN itself: tests/models/test_knn.py.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_cyto.training.callbacks import (
    CollapseGuard,
    LastCheckpoint,
    OnlineKNN,
    Throughput,
    effective_rank,
    embedding_stats,
)

# ---------------------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------------------


def test_effective_rank_closed_form() -> None:
    # Singular values (3, 2, 1): p = (1/2, 1/3, 1/6), erank = exp(H(p)).
    x = torch.zeros(5, 4)
    x[0, 0], x[1, 1], x[2, 2] = 3.0, 2.0, 1.0
    p = torch.tensor([3.0, 2.0, 1.0]) / 6.0
    expected = math.exp(float(-(p * p.log()).sum()))
    assert effective_rank(x) == pytest.approx(expected, rel=1e-6)
    # Rotating the matrix does not change its singular values.
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    assert effective_rank(x.double() @ q) == pytest.approx(expected, rel=1e-6)
    # Equal singular values: erank = rank; rank one: 1.
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0, rel=1e-6)
    assert effective_rank(torch.ones(10, 3)) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.zeros(4, 4)) == 0.0


def test_embedding_stats_collapse_vs_healthy() -> None:
    torch.manual_seed(0)
    const = torch.ones(64, 32) * 0.7
    s = embedding_stats(const)
    assert s["std"] == pytest.approx(0.0, abs=1e-6)
    assert s["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    assert s["effective_rank_centred"] == 0.0
    # Varying (slightly) along one direction only: centred effective rank about 1.
    base, direction = torch.zeros(32), torch.zeros(32)
    base[0], direction[1] = 5.0, 1.0
    line = base + 0.01 * torch.randn(64, 1) * direction
    assert embedding_stats(line)["effective_rank_centred"] == pytest.approx(1.0, abs=0.05)
    healthy = embedding_stats(torch.randn(2000, 32))
    # Isotropic Gaussian: L2-normalised coordinates have std ~ 1/sqrt(D).
    assert healthy["std_ratio"] == pytest.approx(1.0, abs=0.05)
    assert healthy["effective_rank"] > 25
    assert healthy["effective_rank_centred"] > 25
    bad = embedding_stats(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]))
    assert bad["finite"] == 0.0


# ---------------------------------------------------------------------------------------------------------
# tiny training harness (no project data needed)
# ---------------------------------------------------------------------------------------------------------


class _Views(Dataset):
    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return [self.x[i], self.x[i] + 0.01]


class _Labelled(Dataset):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(1)
        self.y = torch.arange(4).repeat_interleave(n // 4)
        self.x = torch.randn(n, 3, 8, 8, generator=g) + self.y[:, None, None, None].float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class _DM(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Views(), batch_size=8)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Labelled(), batch_size=16)


class _Toy(pl.LightningModule):
    """Linear 'backbone'; loss turns NaN from step ``nan_at``; ``constant`` makes embeddings collapse."""

    def __init__(self, nan_at: int | None = None, constant: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(192, 16))
        self.nan_at = nan_at
        if constant:
            with torch.no_grad():
                self.backbone[1].weight.zero_()
                self.backbone[1].bias.fill_(1.0)
            self.backbone.requires_grad_(False)
            self.dummy = nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        z0, z1 = self.backbone(batch[0]), self.backbone(batch[1])
        loss = (z0 - z1).pow(2).mean() + z0.pow(2).mean() * 1e-3
        if hasattr(self, "dummy"):
            loss = loss + self.dummy.sum()
        if self.nan_at is not None and self.global_step >= self.nan_at:
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.01)


def _trainer(root: Path, callbacks: list[pl.Callback], max_steps: int = 12) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=str(root),
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    guard = CollapseGuard(check_collapse=False)
    ckpt = LastCheckpoint(every_n_train_steps=2)
    model = _Toy(nan_at=5)  # the loss of the 6th step (global_step 5 -> 6) is NaN
    trainer = _trainer(tmp_path, [guard, ckpt], max_steps=50)
    trainer.fit(model, datamodule=_DM())
    assert guard.tripped and "non-finite loss" in guard.reason
    assert trainer.global_step == 6  # stopped right after the bad step
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4  # the last multiple of 2 before the NaN, not 6 nor an epoch-end save
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    # The live model is NaN (the step happened); the checkpoint is the good one.
    assert not torch.isfinite(model.backbone[1].weight).all()


def test_collapse_detected_on_constant_embeddings(tmp_path: Path) -> None:
    guard = CollapseGuard(check_nan=True, check_collapse=True)
    ckpt = LastCheckpoint(every_n_train_steps=0)
    trainer = _trainer(tmp_path, [guard, ckpt], max_steps=40)  # 8 steps per epoch
    trainer.fit(_Toy(constant=True), datamodule=_DM())
    assert guard.tripped and "collapse" in guard.reason
    assert guard.last_stats["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert guard.last_stats["effective_rank_centred"] == pytest.approx(0.0, abs=1e-3)
    assert trainer.global_step == 8  # stopped at the first epoch end
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # nothing saved after the trip


def test_healthy_run_not_stopped_and_knn_logged(tmp_path: Path) -> None:
    guard = CollapseGuard()
    knn = OnlineKNN(k=5)
    thr = Throughput()
    ckpt = LastCheckpoint(every_n_train_steps=5)
    trainer = _trainer(tmp_path, [guard, knn, thr, ckpt], max_steps=16)
    trainer.fit(_Toy(), datamodule=_DM())
    assert not guard.tripped
    assert [s for s, _ in knn.history] == [0, 8, 16]  # before training and after each of two epochs
    assert all(0.0 <= a <= 1.0 for _, a in knn.history)
    assert guard.last_stats["effective_rank_centred"] > 1.5
    assert thr.last_metrics["throughput/cells_per_s"] > 0
    assert thr.last_metrics["throughput/images_per_s"] == pytest.approx(
        2 * thr.last_metrics["throughput/cells_per_s"]
    )
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 16
