"""The Lightning data module of pretraining: :class:`CellDataModule`.

It resolves ``data`` (any form of :func:`ssl_cyto.data.loading.resolve_data`: shards, a brace pattern,
a ``pipe:`` URL, a catalog, an image folder, ``synth:<layout>[:<per_class>]``) and serves two modes:

* **train** (:meth:`CellDataModule.train_dataloader`): exactly ``batches_per_epoch`` batches per rank
  and epoch from a seeded stream (:func:`ssl_cyto.data.loading.train_loader`); a batch is
  ``list[Tensor]``, one stacked tensor per view of the task's ``train_transform``. With
  ``batches_per_epoch`` given, consecutive epochs continue the stream (every cell once before any
  twice); otherwise each epoch is a fresh pass over the data.
* **resume**: :meth:`CellDataModule.state_dict` (stored by Lightning in every checkpoint) holds the
  epoch and the batches of it already consumed; after :meth:`CellDataModule.load_state_dict` the
  next training pass of that epoch skips them, so a resumed run sees the cells, in the order, of the
  uninterrupted run.
* **val** (:meth:`CellDataModule.val_dataloader`): ``(images, labels)`` over a fixed, seeded,
  labelled subset of ``val_size`` cells (from ``val_data`` or ``data``), transformed with the task's
  ``eval_transform``; ``datamodule.val_classes`` names the label indices. Each rank gets a disjoint
  share, so gathering across ranks gives every cell exactly once.

Embedding reads every cell once with :func:`ssl_cyto.data.loading.eval_loader` instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssl_cyto.data.loading import (
    DataSpecError,
    LabelledSubset,
    RankShareSampler,
    ResolvedData,
    TrainLoaderOptions,
    pick_labelled,
    resolve_data,
    train_loader,
)
from ssl_cyto.data.loading.evaluation import LabelledItem
from ssl_cyto.data.loading.seeding import ignore_preemption_signals


class CellDataModule(pl.LightningDataModule):
    """Cells for SSL pretraining (train) and online kNN (val).

    Args:
        data: shard folder / brace pattern / ``pipe:`` URL / image folder / ``catalog.parquet`` /
            ``synth:<layout>[:<per_class>]``.
        val_data: where the labelled validation subset comes from (default: ``data``).
        batch_size: cells per training batch (per device).
        num_workers: DataLoader worker processes.
        batches_per_epoch: training batches per epoch on every rank (default: cells //
            (batch_size * world_size), at least 1; required for remote shards without index.json).
        shuffle_buffer: samples held per worker for shuffling a shard stream.
        source_weights: relative per-cell sampling weight by source (unlisted sources: 1.0), e.g.
            ``{"aml-lmu": 9.0}``.
        val_size: cells in the labelled validation subset (0: no validation).
        val_batch_size: batch size for validation (default: ``batch_size``).
        seed: seeds the training stream, the sampler and the validation subset.
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).

    Raises:
        DataSpecError: a non-positive batch size, batch count or shuffle buffer, or negative counts.
    """

    def __init__(
        self,
        data: str,
        val_data: str | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        batches_per_epoch: int | None = None,
        shuffle_buffer: int = 1000,
        source_weights: dict[str, float] | None = None,
        val_size: int = 512,
        val_batch_size: int | None = None,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataSpecError(f"batch_size must be >= 1 (got {batch_size})")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise DataSpecError(f"batches_per_epoch must be >= 1 (got {batches_per_epoch})")
        if num_workers < 0 or val_size < 0 or shuffle_buffer < 1:
            raise DataSpecError("num_workers and val_size must be >= 0, shuffle_buffer >= 1")
        self.save_hyperparameters()
        self.data = str(data)
        self.val_data = None if val_data is None else str(val_data)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.batches_per_epoch = batches_per_epoch
        self.shuffle_buffer = int(shuffle_buffer)
        self.source_weights = dict(source_weights) if source_weights else None
        self.val_size = int(val_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.train_transform: Callable[[Any], Any] | None = None  # override the task's transforms
        self.eval_transform: Callable[[Any], Any] | None = None
        self.val_classes: list[str] = []
        self._resolved: ResolvedData | None = None
        self._val_items: list[LabelledItem] | None = None
        self._resume: tuple[int, int] | None = None
        self._given: dict[str, Callable[[Any], Any]] = {}

    # ---- helpers ----------------------------------------------------------------------------
    @property
    def resolved(self) -> ResolvedData:
        """The resolved training data (resolved on first use)."""
        if self._resolved is None:
            self._resolved = resolve_data(self.data)
        return self._resolved

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def use_transforms(self, train_transform: Callable[[Any], Any], eval_transform: Callable[[Any], Any]) -> None:
        """The transforms of the task being trained (its ``setup`` hands them over; ones set by hand on
        ``datamodule.train_transform`` / ``eval_transform`` win). The data layer never reads the task."""
        self._given = {"train_transform": train_transform, "eval_transform": eval_transform}

    def _task_transform(self, name: str) -> Callable[[Any], Any]:
        own = getattr(self, name)
        if own is not None:
            return own
        if name not in self._given:
            raise RuntimeError(
                f"CellDataModule needs a {name}: train it with an SSLTask (whose setup hands its transforms "
                f"over), call datamodule.use_transforms(...), or set datamodule.{name}"
            )
        return self._given[name]

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_batches(self, world_size: int | None = None) -> int:
        """Training batches per epoch on every rank.

        Raises:
            DataSpecError: the number of cells is unknown and ``batches_per_epoch`` was not given.
        """
        if self.batches_per_epoch is not None:
            return int(self.batches_per_epoch)
        n = self.resolved.n_cells
        if n is None:
            raise DataSpecError(
                f"{self.data}: the number of cells is unknown (no index.json); give batches_per_epoch"
            )
        world = self._rank_world()[1] if world_size is None else world_size
        return max(1, n // (self.batch_size * world))

    def _build_val_subset(self) -> None:
        res = resolve_data(self.val_data) if self.val_data is not None else self.resolved
        self.val_classes, self._val_items = pick_labelled(res, self.val_size, self.seed)
        if not self._val_items:
            warnings.warn(f"{self.val_data or self.data}: no labelled cells; online kNN is off", stacklevel=2)

    # ---- resume ---------------------------------------------------------------------------------
    def shape(self) -> dict[str, int]:
        """What a resume must keep for the stream to continue as it was: ranks, loader workers, batch size."""
        return {
            "world_size": self._rank_world()[1],
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches_done", "shape"}``: where the training stream stands (saved in checkpoints)."""
        trainer = self.trainer
        if trainer is None or not hasattr(trainer, "fit_loop"):
            return {"epoch": 0, "batches_done": 0, "shape": self.shape()}
        current = trainer.fit_loop.epoch_loop.batch_progress.current
        done = getattr(current, "processed", current.completed)  # batches trained this epoch
        return {"epoch": int(trainer.current_epoch), "batches_done": int(done), "shape": self.shape()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next pass of that epoch skips the batches consumed.

        A checkpoint of another shape (the trainer refuses it unless ``--run.allow_reshape``) keeps its
        position in samples: ``batches_done x batch size x world size`` of the old shape.
        """
        if "epoch" not in state:
            return
        done = int(state.get("batches_done", 0))
        old = state.get("shape") or {}
        if old and old != self.shape():
            samples = done * int(old.get("batch_size", self.batch_size)) * int(old.get("world_size", 1))
            done = samples // (self.batch_size * self._rank_world()[1])
        self._resume = (int(state["epoch"]), done)

    # ---- Lightning hooks --------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the cached cells of ``synth:`` data once (Lightning calls this on rank 0)."""
        for spec in (self.data, self.val_data):
            if spec is not None and spec.startswith("synth:"):
                resolve_data(spec)

    def setup(self, stage: str | None = None) -> None:
        """Resolve the data and pick the validation subset (``fit`` / ``validate``)."""
        _ = self.resolved
        if stage in (None, "fit", "validate") and self.val_size > 0 and self._val_items is None:
            self._build_val_subset()

    def train_dataloader(self) -> DataLoader:
        """Exactly :meth:`train_batches` batches of views per pass, the same number on every rank."""
        rank, world = self._rank_world()
        options = TrainLoaderOptions(
            batch_size=self.batch_size,
            batches=self.train_batches(world),
            num_workers=self.num_workers,
            shuffle_buffer=self.shuffle_buffer,
            source_weights=self.source_weights,
            seed=self.seed,
            rank=rank,
            world_size=world,
            epoch=self._current_epoch(),  # Lightning calls sampler.set_epoch again at each epoch
            epoch_fn=self._current_epoch,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            continuous=self.batches_per_epoch is not None,
            resume=self._resume,
        )
        return train_loader(self.resolved, self._task_transform("train_transform"), options)

    def val_dataloader(self) -> DataLoader | list:
        """``(images, labels)`` of this rank's share of the labelled subset (``[]`` when there is none)."""
        if self.val_size == 0:
            return []
        if self._val_items is None:
            self._build_val_subset()
        assert self._val_items is not None
        if not self._val_items:
            return []
        rank, world = self._rank_world()
        ds = LabelledSubset(self._val_items, self._task_transform("eval_transform"))
        return DataLoader(
            ds,
            batch_size=self.val_batch_size,
            sampler=RankShareSampler(len(ds), rank, world),
            num_workers=min(self.num_workers, 2),
            pin_memory=self.pin_memory,
            worker_init_fn=ignore_preemption_signals,
        )
