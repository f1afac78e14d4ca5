"""Throughput and GPU memory per training step."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class Throughput(pl.Callback):
    """Per-step throughput and GPU memory.

    Logs ``throughput/cells_per_s`` and ``throughput/images_per_s`` (cells x views) per device and
    ``..._total`` (times the world size), measured between consecutive batch ends (so data loading is
    included), and ``gpu/mem_alloc_gib`` / ``gpu/mem_peak_gib`` on CUDA.

    Args:
        log_every_n_steps: log every this many optimiser steps (the logger's own interval still applies).
    """

    def __init__(self, log_every_n_steps: int = 1) -> None:
        super().__init__()
        self.log_every_n_steps = max(1, log_every_n_steps)
        self._last: float | None = None
        self.last_metrics: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # do not count the epoch boundary (dataloader restart) as a step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        last, self._last = self._last, now
        if last is None or trainer.global_step % self.log_every_n_steps:
            return
        dt = max(now - last, 1e-9)
        views = batch if isinstance(batch, (list, tuple)) else [batch]
        views = [v for v in views if isinstance(v, torch.Tensor) and v.ndim == 4]
        if not views:
            return
        cells = views[0].shape[0]
        images = sum(v.shape[0] for v in views)
        world = trainer.world_size
        metrics = {
            "throughput/cells_per_s": cells / dt,
            "throughput/images_per_s": images / dt,
            "throughput/cells_per_s_total": cells * world / dt,
            "throughput/images_per_s_total": images * world / dt,
        }
        if pl_module.device.type == "cuda":
            metrics["gpu/mem_alloc_gib"] = torch.cuda.memory_allocated(pl_module.device) / 2**30
            metrics["gpu/mem_peak_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        self.last_metrics = metrics
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, logger=True)
