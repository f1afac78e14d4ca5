"""The one rolling ``last.ckpt`` a run resumes from."""

from __future__ import annotations

import os
import shutil
from weakref import proxy

import pytorch_lightning as pl
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import ModelCheckpoint

from ssl_cyto.training.callbacks.collapse_guard import guards
from ssl_cyto.training.preemption import fsync_file

#: The checkpoint before ``last.ckpt``, kept as a fallback (a resume falls back to it when ``last.ckpt``
#: does not load).
PREVIOUS_NAME = "previous.ckpt"


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps one rolling ``last.ckpt`` and the one before it (``previous.ckpt``).

    Written every ``every_n_train_steps`` optimiser steps, at every training-epoch end (unless
    ``save_on_epoch_end`` is false) and at the end of training, into ``dirpath`` (default
    ``<trainer.default_root_dir>/checkpoints``). It never writes once a :class:`CollapseGuard` has
    tripped, so a NaN never overwrites the last good checkpoint. Rerunning the same ``ssl-cyto fit``
    command resumes from it (see :mod:`ssl_cyto.training.fit`). A new ``last.ckpt`` is written to a
    temporary file and flushed to the disk before the old one becomes ``previous.ckpt`` and the new one
    takes its name, so a complete checkpoint exists at every moment, and a ``last.ckpt`` that does not
    load (a file system that lost its tail) leaves ``previous.ckpt`` to resume from. This doubles the
    disk space of the run's checkpoints.

    Args:
        dirpath: folder for ``last.ckpt``.
        every_n_train_steps: save interval in optimiser steps (0: epoch ends and the end only).
        save_weights_only: drop optimiser/scheduler state (not resumable; for tiny exports only).
        save_on_epoch_end: also save at every epoch end (``false``: on the step interval and at the end
            only, independent of ``data.batches_per_epoch``).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int = 500,
        save_weights_only: bool = False,
        save_on_epoch_end: bool = True,
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
        self.save_on_epoch_end = save_on_epoch_end

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(str(trainer.default_root_dir), "checkpoints")
        super().setup(trainer, pl_module, stage)

    def _blocked(self, trainer: pl.Trainer) -> bool:
        return any(g.tripped for g in guards(trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        """Save atomically on local disks (write ``last.ckpt.tmp``, then rename), so a job killed while
        writing never leaves a truncated ``last.ckpt``; refuse once a guard tripped."""
        if self._blocked(trainer):
            return
        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        tmp = f"{filepath}.tmp"
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero and os.path.exists(tmp):
            if os.path.isdir(tmp) and os.path.isdir(filepath):  # sharded (directory) checkpoints
                shutil.rmtree(filepath)
            elif os.path.isfile(filepath):  # the previous checkpoint stays until the new one is complete
                os.replace(filepath, os.path.join(os.path.dirname(filepath), PREVIOUS_NAME))
            os.replace(tmp, filepath)
            if os.path.isfile(filepath):
                fsync_file(os.path.dirname(filepath) or ".")
        trainer.strategy.barrier("LastCheckpoint.rename")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.save_on_epoch_end:
            return
        if not self._should_skip_saving_checkpoint(trainer) and not self._blocked(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and not self._blocked(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
