"""Collapse / NaN guard: stop a run whose loss is not finite or whose representation collapsed.

The non-finite check runs every step. The collapse check runs every epoch on the labelled
validation subset: the per-dimension standard deviation of L2-normalised embeddings (collapse -> 0,
healthy ~ 1/sqrt(D); Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021) and
the effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli 2007, used
as "RankMe" by Garrido et al., ICML 2023).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor

from ssl_cyto.training.callbacks.validation import eval_backbone, log_now, val_embeddings


class TrainingStopped(RuntimeError):
    """Raised by :func:`ssl_cyto.training.fit.run_fit` when :class:`CollapseGuard` stopped the run."""


def effective_rank(x: Tensor, eps: float = 1e-12, atol: float = 0.0) -> float:
    """Effective rank of a matrix: ``exp(H(p))`` with ``p = s / sum(s)`` over its singular values ``s``.

    Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007; used as a
    collapse measure ("RankMe") by Garrido et al., ICML 2023. It is 1 for a rank-one matrix (e.g. constant
    embeddings) and ``min(N, D)`` when all singular values are equal.

    Args:
        x: ``(N, D)`` matrix (embeddings; not centred, as in RankMe).
        eps: added to ``p`` inside the log.
        atol: singular values at or below this count as zero (round-off of a collapsed matrix).

    Returns:
        The effective rank (``0.0`` for an all-zero matrix).
    """
    s = torch.linalg.svdvals(x.detach().double())
    s = s[s > atol]
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return 0.0
    p = s / total
    entropy = -(p * torch.log(p + eps)).sum()
    return float(torch.exp(entropy))


def embedding_stats(emb: Tensor) -> dict[str, float]:
    """Collapse statistics of a batch of embeddings.

    Args:
        emb: ``(N, D)`` embeddings (not normalised).

    Returns:
        ``std``: mean over dimensions of the per-dimension std of the L2-normalised embeddings (complete
        collapse: 0; isotropic: about ``1/sqrt(D)``); ``std_ratio``: ``std * sqrt(D)`` (isotropic: about 1;
        a randomly initialised CNN with ReLU + average pooling already sits near 0.05 because all its
        features are positive, so only values far below that mean collapse); ``effective_rank``: of the raw
        embeddings (RankMe); ``effective_rank_centred``: of the centred L2-normalised embeddings (0 for
        constant embeddings, about 1 when they vary along one direction only); ``finite``: 1.0 when every
        value is finite, else 0.0.
    """
    emb = emb.detach().float()
    finite = bool(torch.isfinite(emb).all())
    if not finite or emb.shape[0] < 2:
        nan = float("nan")
        return {
            "std": nan,
            "std_ratio": nan,
            "effective_rank": nan,
            "effective_rank_centred": nan,
            "finite": float(finite),
        }
    z = torch.nn.functional.normalize(emb, dim=1)
    std = float(z.std(dim=0).mean())
    return {
        "std": std,
        "std_ratio": std * math.sqrt(emb.shape[1]),
        "effective_rank": effective_rank(emb),
        # entries of centred unit vectors are O(1): singular values below 1e-5 * sqrt(N) are round-off
        "effective_rank_centred": effective_rank(
            z - z.mean(dim=0, keepdim=True), atol=1e-5 * math.sqrt(emb.shape[0])
        ),
        "finite": 1.0,
    }


class CollapseGuard(pl.Callback):
    """Stop on a non-finite loss (every step) or a collapsed representation (every epoch).

    The non-finite check looks at the loss returned by ``training_step``. The collapse check embeds the
    labelled validation subset (see :func:`val_embeddings`; without one, the first view of the last
    training batch) and computes :func:`embedding_stats`, logged as ``collapse/std``,
    ``collapse/std_ratio``, ``collapse/effective_rank`` and ``collapse/effective_rank_centred``. The run
    is collapsed when ``std_ratio < min_std_ratio`` or ``effective_rank_centred < min_effective_rank``
    (the defaults sit far below a randomly initialised network - std_ratio ~0.05, centred effective rank
    8-70 for tiny_cnn / resnet18 on generated cells - and below the dip of early SimCLR training, where
    std_ratio fell to ~0.009 in the smoke run).

    When tripped, ``trainer.should_stop`` is set (agreed across ranks), ``tripped`` / ``reason`` are set,
    a message goes to stderr, and :class:`LastCheckpoint` refuses to write any further checkpoint, so
    ``last.ckpt`` keeps the last good state. :func:`ssl_cyto.training.fit.run_fit` then raises
    :class:`TrainingStopped` with the reason.

    Args:
        check_nan: stop on a NaN/inf loss.
        check_collapse: stop on collapse.
        min_std_ratio: collapse threshold on ``std * sqrt(D)`` (isotropic ~ 1, random init ~ 0.05, collapse ~ 0).
        min_effective_rank: collapse threshold on the centred effective rank (constant embeddings: 0, one
            direction: ~1).
        every_n_epochs: collapse check interval in epochs (when ``every_n_steps`` is 0).
        every_n_steps: collapse check interval in optimiser steps (0: by epochs). Checks by steps keep
            the check independent of ``data.batches_per_epoch``.
    """

    def __init__(
        self,
        check_nan: bool = True,
        check_collapse: bool = True,
        min_std_ratio: float = 0.001,
        min_effective_rank: float = 1.5,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_steps = max(0, every_n_steps)
        self._checked_step = -1
        self.check_nan = check_nan
        self.check_collapse = check_collapse
        self.min_std_ratio = min_std_ratio
        self.min_effective_rank = min_effective_rank
        self.every_n_epochs = max(1, every_n_epochs)
        self.tripped = False
        self.reason = ""
        self.last_stats: dict[str, float] = {}
        self._last_view: Tensor | None = None

    def _trip(self, trainer: pl.Trainer, reason: str) -> None:
        self.tripped = True
        self.reason = reason
        trainer.should_stop = True
        ckpt = last_ckpt_path(trainer)
        msg = f"ssl-cyto: training stopped at step {trainer.global_step}: {reason}. "
        msg += f"The last good checkpoint is kept: {ckpt}" if ckpt else "No checkpoint had been written yet."
        if trainer.is_global_zero:
            print(msg, file=sys.stderr, flush=True)

    def _nan_check(self, trainer: pl.Trainer, outputs: Any, batch: Any) -> None:
        if self.tripped:
            return
        if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
            self._last_view = batch[0]
        if not self.check_nan:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float("nan")
            self._trip(trainer, f"non-finite loss ({value}) - lower the learning rate or use bf16/fp32")

    def _step_due(self, trainer: pl.Trainer) -> bool:
        step = int(trainer.global_step)
        if self.every_n_steps <= 0 or step == self._checked_step or step % self.every_n_steps:
            return False
        self._checked_step = step
        return True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._nan_check(trainer, outputs, batch)
        if self._step_due(trainer):
            self._collapse_check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_steps <= 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._collapse_check(trainer, pl_module)

    def _collapse_check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.tripped or not self.check_collapse or getattr(trainer, "fast_dev_run", False):
            return
        result = val_embeddings(trainer, pl_module)
        if result is not None:
            emb = result[0]
        elif self._last_view is not None:
            backbone: Any = eval_backbone(pl_module)
            was_training = backbone.training
            backbone.eval()
            with torch.no_grad():
                emb = backbone(self._last_view.to(pl_module.device)).float().cpu()
            backbone.train(was_training)
        else:
            return
        stats = embedding_stats(emb)
        self.last_stats = stats
        log_now(
            trainer,
            {f"collapse/{k}": v for k, v in stats.items() if k != "finite" and math.isfinite(v)},
        )
        bad = stats["finite"] < 1 or stats["std_ratio"] < self.min_std_ratio
        bad = bad or stats["effective_rank_centred"] < self.min_effective_rank
        bad = trainer.strategy.reduce_boolean_decision(bool(bad), all=False)
        if bad:
            self._trip(
                trainer,
                "representation collapse (std*sqrt(D)={:.4f} < {} or centred effective rank={:.3f} < {}, "
                "finite={})".format(
                    stats["std_ratio"],
                    self.min_std_ratio,
                    stats["effective_rank_centred"],
                    self.min_effective_rank,
                    bool(stats["finite"]),
                ),
            )


def guards(trainer: pl.Trainer) -> list[CollapseGuard]:
    """The :class:`CollapseGuard` callbacks of a trainer."""
    return [cb for cb in trainer.callbacks if isinstance(cb, CollapseGuard)]  # type: ignore[attr-defined]


def last_ckpt_path(trainer: pl.Trainer) -> str:
    """The last checkpoint a ``ModelCheckpoint`` of the trainer wrote, or ``""``."""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.last_model_path and os.path.exists(cb.last_model_path):
            return cb.last_model_path
    return ""
