"""Training callbacks: throughput, online kNN, collapse / NaN guard, and the ``last.ckpt`` writer.

All four are wired into ``ssl-cyto fit`` by default (see :mod:`ssl_cyto.fit`) and can be tuned from YAML
(``knn:``, ``guard:``, ``throughput:``, ``checkpoint:`` sections).

* :class:`Throughput` logs cells/s and images/s (all views) per device and in total, and GPU memory.
* :class:`OnlineKNN` logs the leave-one-out weighted kNN accuracy of the backbone's embeddings on the
  datamodule's small labelled validation subset, before training (step 0) and after every epoch. It is
  the only place where labels are used during pretraining. The classifier is the weighted kNN of Wu et
  al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018 (k=20,
  cosine similarity, votes weighted by ``exp(sim / 0.07)``), as used to monitor DINO (Caron et al. 2021).
* :class:`CollapseGuard` stops a run on a non-finite loss (checked every step) or on representation
  collapse (checked every epoch): the per-dimension standard deviation of L2-normalised embeddings
  (collapse -> 0, healthy ~ 1/sqrt(D); Chen & He, "Exploring Simple Siamese Representation Learning",
  CVPR 2021) and the effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli
  2007, used as "RankMe" by Garrido et al., ICML 2023). Once tripped, no checkpoint is written any more,
  so ``last.ckpt`` stays the last good one.
* :class:`LastCheckpoint` writes ``<default_root_dir>/checkpoints/last.ckpt`` every N optimiser steps, at
  every epoch end and at the end of training, and never after the guard tripped.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

__all__ = [
    "CollapseGuard",
    "RunMetadata",
    "LastCheckpoint",
    "OnlineKNN",
    "Throughput",
    "TrainingStopped",
    "effective_rank",
    "embedding_stats",
    "knn_loo_accuracy",
    "val_embeddings",
]


class TrainingStopped(RuntimeError):
    """Raised by :func:`ssl_cyto.fit.run_fit` when :class:`CollapseGuard` stopped the run."""


# --------------------------------------------------------------------------------------------------------
# Pure functions (unit-tested on known inputs)
# --------------------------------------------------------------------------------------------------------


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


def knn_loo_accuracy(emb: Tensor, labels: Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Leave-one-out weighted kNN accuracy (Wu et al. 2018).

    Each labelled embedding is classified by its ``k`` most cosine-similar other embeddings, each voting
    for its label with weight ``exp(sim / temperature)``. Cells with a negative label are ignored.

    Args:
        emb: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer class indices (negative = unlabelled).
        k: neighbours (capped at ``N - 1``).
        temperature: vote temperature.

    Returns:
        Accuracy in [0, 1]; ``nan`` with fewer than two labelled cells.
    """
    keep = labels >= 0
    emb, labels = emb[keep].float(), labels[keep].long()
    n = emb.shape[0]
    if n < 2:
        return float("nan")
    z = torch.nn.functional.normalize(emb, dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-float("inf"))
    k = min(k, n - 1)
    top_sim, top_idx = sim.topk(k, dim=1)
    weights = torch.exp(top_sim / temperature)
    n_classes = int(labels.max()) + 1
    votes = torch.zeros(n, n_classes, dtype=weights.dtype)
    votes.scatter_add_(1, labels[top_idx], weights)
    pred = votes.argmax(dim=1)
    return float((pred == labels).float().mean())


# --------------------------------------------------------------------------------------------------------
# Embeddings of the labelled validation subset (shared by OnlineKNN and CollapseGuard)
# --------------------------------------------------------------------------------------------------------

_CACHE_ATTR = "_ssl_cyto_val_embeddings"


def _val_loader(trainer: pl.Trainer) -> Any | None:
    dm = getattr(trainer, "datamodule", None)
    if dm is None or not hasattr(dm, "val_dataloader"):
        return None
    loader = dm.val_dataloader()
    if loader is None or (isinstance(loader, (list, tuple)) and len(loader) == 0):
        return None
    return loader


def _eval_backbone(pl_module: pl.LightningModule) -> Any:
    """The network that gets exported and evaluated: ``export_backbone()`` (DINO: the teacher) when the
    module has it, else ``pl_module.backbone``."""
    export = getattr(pl_module, "export_backbone", None)
    return export() if callable(export) else pl_module.backbone


@torch.no_grad()
def val_embeddings(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor] | None:
    """Embed the datamodule's labelled validation subset with the module's backbone in eval mode.

    The backbone is ``pl_module.export_backbone()`` when defined (DINO: the teacher, i.e. the network
    ``ssl-cyto export`` writes), else ``pl_module.backbone``.

    The result is cached per global step, so several callbacks share one pass. Under DDP, every rank's
    share is gathered so every rank sees the whole subset.

    Returns:
        ``(embeddings (N, D) float32 on CPU, labels (N,) long)``, or ``None`` when the datamodule has no
        validation subset.
    """
    cached = getattr(trainer, _CACHE_ATTR, None)
    if cached is not None and cached[0] == trainer.global_step:
        return cached[1]
    loader = _val_loader(trainer)
    if loader is None:
        setattr(trainer, _CACHE_ATTR, (trainer.global_step, None))
        return None
    backbone: Any = _eval_backbone(pl_module)
    was_training = backbone.training
    backbone.eval()
    embs: list[Tensor] = []
    labs: list[Tensor] = []
    try:
        for images, labels in loader:
            out = backbone(images.to(pl_module.device, non_blocking=True))
            embs.append(out.float().cpu())
            labs.append(torch.as_tensor(labels).long().cpu())
    finally:
        backbone.train(was_training)
    emb = torch.cat(embs) if embs else torch.zeros(0, 1)
    lab = torch.cat(labs) if labs else torch.zeros(0, dtype=torch.long)
    if trainer.world_size > 1:
        emb, lab = _gather_uneven(pl_module, emb, lab)
    result = (emb, lab)
    setattr(trainer, _CACHE_ATTR, (trainer.global_step, result))
    return result


def _gather_uneven(pl_module: pl.LightningModule, emb: Tensor, lab: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather per-rank tensors of different lengths (pad to the longest, then trim)."""
    device = pl_module.device
    gather: Any = pl_module.all_gather
    n = torch.tensor([emb.shape[0]], device=device)
    sizes = gather(n).reshape(-1).tolist()
    longest = int(max(sizes))
    pad_e = torch.zeros(longest, emb.shape[1], device=device)
    pad_e[: emb.shape[0]] = emb.to(device)
    pad_l = torch.full((longest,), -1, dtype=torch.long, device=device)
    pad_l[: lab.shape[0]] = lab.to(device)
    all_e = gather(pad_e).reshape(len(sizes), longest, -1)
    all_l = gather(pad_l).reshape(len(sizes), longest)
    es = [all_e[i, : int(s)].cpu() for i, s in enumerate(sizes)]
    ls = [all_l[i, : int(s)].cpu() for i, s in enumerate(sizes)]
    return torch.cat(es), torch.cat(ls)


def _log_now(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send metrics straight to every logger at the current global step (rank zero only)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


# --------------------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------------------


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
    """

    def __init__(
        self, k: int = 20, temperature: float = 0.07, every_n_epochs: int = 1, at_start: bool = True
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
        _log_now(trainer, {"knn/acc": acc, "knn/n_cells": float((labels >= 0).sum())})
        rank_zero_only(log.info)(f"online kNN accuracy at step {trainer.global_step}: {acc:.4f}")
        return acc

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs > 0 and self.at_start:
            self._evaluate(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._evaluate(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [tuple(x) for x in state_dict.get("history", [])]  # type: ignore[misc]


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
    ``last.ckpt`` keeps the last good state. :func:`ssl_cyto.fit.run_fit` then raises
    :class:`TrainingStopped` with the reason.

    Args:
        check_nan: stop on a NaN/inf loss.
        check_collapse: stop on collapse.
        min_std_ratio: collapse threshold on ``std * sqrt(D)`` (isotropic ~ 1, random init ~ 0.05, collapse ~ 0).
        min_effective_rank: collapse threshold on the centred effective rank (constant embeddings: 0, one
            direction: ~1).
        every_n_epochs: collapse check interval in epochs.
    """

    def __init__(
        self,
        check_nan: bool = True,
        check_collapse: bool = True,
        min_std_ratio: float = 0.001,
        min_effective_rank: float = 1.5,
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
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
        ckpt = _last_ckpt_path(trainer)
        msg = f"ssl-cyto: training stopped at step {trainer.global_step}: {reason}. "
        msg += f"The last good checkpoint is kept: {ckpt}" if ckpt else "No checkpoint had been written yet."
        if trainer.is_global_zero:
            print(msg, file=sys.stderr, flush=True)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.tripped or not self.check_collapse or getattr(trainer, "fast_dev_run", False):
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        result = val_embeddings(trainer, pl_module)
        if result is not None:
            emb = result[0]
        elif self._last_view is not None:
            backbone: Any = _eval_backbone(pl_module)
            was_training = backbone.training
            backbone.eval()
            with torch.no_grad():
                emb = backbone(self._last_view.to(pl_module.device)).float().cpu()
            backbone.train(was_training)
        else:
            return
        stats = embedding_stats(emb)
        self.last_stats = stats
        _log_now(
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


def _guards(trainer: pl.Trainer) -> list[CollapseGuard]:
    return [cb for cb in trainer.callbacks if isinstance(cb, CollapseGuard)]  # type: ignore[attr-defined]


def _last_ckpt_path(trainer: pl.Trainer) -> str:
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.last_model_path and os.path.exists(cb.last_model_path):
            return cb.last_model_path
    return ""


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps exactly one rolling ``last.ckpt``.

    Written every ``every_n_train_steps`` optimiser steps, at every training-epoch end and at the end of
    training, into ``dirpath`` (default ``<trainer.default_root_dir>/checkpoints``). It never writes once a
    :class:`CollapseGuard` has tripped, so a NaN never overwrites the last good checkpoint. Rerunning the
    same ``ssl-cyto fit`` command resumes from it (see :mod:`ssl_cyto.fit`).

    Args:
        dirpath: folder for ``last.ckpt``.
        every_n_train_steps: save interval in optimiser steps (0: epoch ends and the end only).
        save_weights_only: drop optimiser/scheduler state (not resumable; for tiny exports only).
    """

    def __init__(
        self, dirpath: str | None = None, every_n_train_steps: int = 500, save_weights_only: bool = False
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
            save_on_train_epoch_end=True,
            save_weights_only=save_weights_only,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(str(trainer.default_root_dir), "checkpoints")
        super().setup(trainer, pl_module, stage)

    def _blocked(self, trainer: pl.Trainer) -> bool:
        return any(g.tripped for g in _guards(trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        """Save atomically on local disks (write ``last.ckpt.tmp``, then rename), so a job killed while
        writing never leaves a truncated ``last.ckpt``; refuse once a guard tripped."""
        if self._blocked(trainer):
            return
        from lightning_fabric.utilities.cloud_io import _is_local_file_protocol

        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        tmp = f"{filepath}.tmp"
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero and os.path.exists(tmp):
            if os.path.isdir(tmp) and os.path.isdir(filepath):  # sharded (directory) checkpoints
                shutil.rmtree(filepath)
            os.replace(tmp, filepath)
        trainer.strategy.barrier("LastCheckpoint.rename")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and not self._blocked(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and not self._blocked(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RunMetadata(pl.Callback):
    """Stores provenance in every checkpoint under ``checkpoint["ssl_cyto"]``.

    ``ssl-cyto export`` reads it back: the task class to rebuild, the method, the hash of the full training
    config, the seed, the git commit and package versions the run was trained with, and the config.

    Args:
        meta: JSON-serialisable dict (``task_class``, ``method``, ``config_hash``, ``seed``, ``git_commit``,
            ``package_versions``, ``config``).
    """

    def __init__(self, meta: dict[str, Any]) -> None:
        super().__init__()
        self.meta = dict(meta)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        info = dict(self.meta)
        info.setdefault("task_class", f"{type(pl_module).__module__}.{type(pl_module).__qualname__}")
        info["global_step"] = trainer.global_step
        checkpoint["ssl_cyto"] = info
