"""Online kNN: how well the backbone separates the labelled validation subset while it trains.

The classifier is the weighted kNN of Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018 (k=20, cosine similarity, votes weighted by ``exp(sim / 0.07)``),
as used to monitor DINO (Caron et al. 2021), here leave-one-out on the labelled validation subset
(:func:`ssl_cyto.models.knn.knn_loo_accuracy`). It is the only place where labels are used during
pretraining.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from ssl_cyto.models.knn import knn_loo_accuracy
from ssl_cyto.training.callbacks.validation import log_now, val_embeddings

log = logging.getLogger(__name__)


class OnlineKNN(pl.Callback):
    """Leave-one-out weighted kNN accuracy on the labelled validation subset, at step 0 and per epoch.

    Logs ``knn/acc`` (and keeps ``history``: a list of ``(global_step, accuracy)``). Embeddings come from
    ``pl_module.backbone`` in eval mode on ``trainer.datamodule.val_dataloader()``, which yields
    ``(images, labels)``.

    Args:
        k: neighbours.
        temperature: vote temperature.
        every_n_epochs: evaluate every this many epochs (0 disables the callback).
        at_start: also evaluate before the first step (the step-0 reference).
        every_n_steps: evaluate every this many optimiser steps instead of at epoch ends (0: by epochs),
            independent of ``data.batches_per_epoch``.
    """

    def __init__(
        self,
        k: int = 20,
        temperature: float = 0.07,
        every_n_epochs: int = 1,
        at_start: bool = True,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__()
        if k < 1 or temperature <= 0:
            raise ValueError(
                f"OnlineKNN: k must be >= 1 and temperature > 0 (got k={k}, temperature={temperature})"
            )
        self.k = k
        self.temperature = temperature
        self.every_n_epochs = every_n_epochs
        self.at_start = at_start
        self.every_n_steps = max(0, every_n_steps)
        self._checked_step = -1
        self.history: list[tuple[int, float]] = []
        self._warned = False

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return None
        result = val_embeddings(trainer, pl_module)
        if result is None:
            if not self._warned:
                rank_zero_only(log.warning)(
                    "OnlineKNN: the datamodule has no labelled validation subset; skipped"
                )
                self._warned = True
            return None
        emb, labels = result
        acc = knn_loo_accuracy(emb, labels, k=self.k, temperature=self.temperature)
        self.history.append((trainer.global_step, acc))
        log_now(trainer, {"knn/acc": acc, "knn/n_cells": float((labels >= 0).sum())})
        rank_zero_only(log.info)(f"online kNN accuracy at step {trainer.global_step}: {acc:.4f}")
        return acc

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs > 0 and self.at_start:
            self._evaluate(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_steps > 0:
            return
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._evaluate(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if self.every_n_steps <= 0 or step == self._checked_step or step % self.every_n_steps:
            return
        self._checked_step = step
        self._evaluate(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [tuple(x) for x in state_dict.get("history", [])]  # type: ignore[misc]
