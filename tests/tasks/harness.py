"""A tiny training harness for the task tests: fixed random views and a one-step Trainer."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

TINY = {"backbone": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}, "input_size": 16}
DINO_TINY = {
    **TINY,
    "n_local_crops": 2,
    "head_hidden_dim": 16,
    "head_bottleneck_dim": 8,
    "head_output_dim": 32,
}


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


#: A DINOv2 small enough for CPU tests: a 2-block ViT of width 24 on 16 px crops with 4 px patches
#: (a 4 x 4 patch grid; 2 x 2 for the 8 px local crops), no stochastic depth.
DINOV2_TINY = {
    "backbone": "vit_tiny_patch16_224",
    "backbone_kwargs": {"patch_size": 4, "depth": 2, "embed_dim": 24, "num_heads": 2},
    "input_size": 16,
    "n_local_crops": 2,
    "local_size": 8,
    "head_hidden_dim": 16,
    "head_bottleneck_dim": 8,
    "head_output_dim": 32,
    "drop_path_rate": 0.0,
    "warmup_teacher_temp_epochs": 0,
}
