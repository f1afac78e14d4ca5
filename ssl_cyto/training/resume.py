"""The resume decision, made once and agreed by every rank.

Before, every rank searched the run folder alone, and "nothing loads" meant a fresh start: a transient
read error on one node sent that rank to step 0 while the others resumed (diverging collectives, or a
hang), and a truncated ``last.ckpt`` restarted every rank silently. :class:`AgreedResume` takes the place
of Lightning's checkpoint connector inside ``trainer.fit``, where the process group exists:

1. rank 0 picks the checkpoint (:func:`~ssl_cyto.training.preemption.find_resume_checkpoint` over the
   configured ``checkpoint.dirpath`` and ``<default_root_dir>/checkpoints``) and broadcasts its choice;
   when checkpoint files exist but none loads, every rank stops with an error naming them;
2. every rank loads the chosen file (retrying a failed read twice); unless every rank succeeded, every
   rank stops with the error, so no rank ever starts alone from step 0;
3. a checkpoint written by another world size, loader worker count or batch size is refused, naming
   what changed (it would re-partition the data stream and rescale the learning rate), unless
   ``--run.allow_reshape=true``: the run then resumes with the data position kept in samples
   (:meth:`ssl_cyto.data.datamodule.CellDataModule.load_state_dict`) and the schedules and the stop
   point too (:mod:`ssl_cyto.tasks.schedule`: ``max_steps`` counts steps of the first shape's global
   batch; a checkpoint without its sample record gets one from its saved shape here).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector
from pytorch_lightning.utilities.migration import pl_legacy_patch
from pytorch_lightning.utilities.migration.utils import _pl_migrate_checkpoint

from ssl_cyto.training.callbacks.last_checkpoint import LastCheckpoint
from ssl_cyto.training.preemption import ResumeError, find_resume_checkpoint

__all__ = ["READ_TRIES", "AgreedResume", "ResumeError", "checkpoint_dirs", "reshape_changes"]

#: Reads of the chosen checkpoint each rank tries before giving up.
READ_TRIES = 3


def checkpoint_dirs(trainer: pl.Trainer) -> list[str]:
    """The ``dirpath`` of every :class:`LastCheckpoint` of the trainer (set once the callbacks are set up)."""
    return [str(cb.dirpath) for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.dirpath]  # type: ignore[attr-defined]


def reshape_changes(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``"key: saved -> now"`` for each shape key (world size, workers, batch size) that differs."""
    if not saved:
        return []
    return [f"{k}: {saved[k]} -> {now[k]}" for k in sorted(now) if k in saved and saved[k] != now[k]]


class AgreedResume(_CheckpointConnector):
    """Lightning's checkpoint connector with the resume decided once and loaded by all ranks or none.

    Args:
        trainer: the trainer (its connector is replaced by this one).
        auto: with no ``ckpt_path``, look for a checkpoint to resume from (``--run.resume``).
        allow_reshape: resume a checkpoint written by another world size, worker count or batch size.
    """

    def __init__(self, trainer: pl.Trainer, auto: bool = True, allow_reshape: bool = False) -> None:
        super().__init__(trainer)
        self.auto = auto
        self.allow_reshape = allow_reshape
        self.resumed_from: str | None = None

    @property
    def _hpc_resume_path(self) -> str | None:
        return None  # hpc_ckpt_*.ckpt files are candidates of the agreed search instead

    def _say(self, message: str) -> None:
        if self.trainer.is_global_zero:
            print(f"ssl-cyto fit: {message}", file=sys.stderr, flush=True)

    def _decide(self) -> str | None:
        """Rank 0's choice, broadcast; an error on rank 0 stops every rank."""
        trainer = self.trainer
        choice: tuple[str | None, str | None] = (None, None)
        if trainer.is_global_zero:
            try:
                choice = (
                    find_resume_checkpoint(
                        trainer.default_root_dir, dirs=checkpoint_dirs(trainer), strict=True
                    ),
                    None,
                )
            except ResumeError as exc:
                choice = (None, str(exc))
        path, error = trainer.strategy.broadcast(choice, src=0)
        if error:
            raise ResumeError(error)
        return path

    def _read(self, path: str, weights_only: bool | None) -> tuple[dict[str, Any] | None, str]:
        """This rank's read of ``path`` (retried): ``(checkpoint, "")`` or ``(None, the error)``."""
        error = ""
        for attempt in range(READ_TRIES):
            try:
                with pl_legacy_patch():
                    return self.trainer.strategy.load_checkpoint(path, weights_only=weights_only), ""
            except Exception as exc:  # any read error: retried, then agreed on below
                error = f"{type(exc).__name__}: {exc}"
                print(
                    f"ssl-cyto fit: rank {self.trainer.global_rank} could not read {path} "
                    f"(try {attempt + 1}/{READ_TRIES}): {error}",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(0.5 * (attempt + 1))
        return None, error

    def resume_start(self, checkpoint_path: Any = None, weights_only: bool | None = None) -> None:
        if checkpoint_path is None and self.auto:
            checkpoint_path = self._decide()
        self._ckpt_path = checkpoint_path
        self.resumed_from = None if not checkpoint_path else str(checkpoint_path)
        if not checkpoint_path:
            return
        path = str(checkpoint_path)
        self._say(f"resuming from {path}")
        loaded, error = self._read(path, weights_only)
        if not self.trainer.strategy.reduce_boolean_decision(loaded is not None, all=True):
            mine = (
                f"this rank ({self.trainer.global_rank}): {error}"
                if error
                else "another rank could not read it"
            )
            raise ResumeError(
                f"{path}: not every rank could read it ({mine}); no rank resumes alone. Check the file "
                "system and rerun, or pass `ssl-cyto fit --ckpt_path=FILE`"
            )
        assert loaded is not None
        self._check_shape(loaded, path)
        self._loaded_checkpoint = _pl_migrate_checkpoint(loaded, path)

    def _check_shape(self, loaded: dict[str, Any], path: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        shape = getattr(dm, "shape", None)
        if dm is None or shape is None:
            return
        saved = loaded.get(type(dm).__qualname__, {})
        changes = reshape_changes(saved.get("shape") if isinstance(saved, dict) else None, shape())
        if not changes:
            return
        if not self.allow_reshape:
            raise ResumeError(
                f"{path} was written with another shape ({'; '.join(changes)}): resuming would re-partition "
                "the data stream and rescale the learning rate; run with the same settings, or pass "
                "`ssl-cyto fit --run.allow_reshape=true` (see docs/training.md)"
            )
        info = loaded.setdefault("ssl_cyto", {})
        if "samples" not in info:  # written before the schedules were kept in samples: derive it
            old = saved["shape"]
            old_batch = int(old.get("batch_size", 1)) * int(old.get("world_size", 1))
            old_batch *= int(self.trainer.accumulate_grad_batches)
            step = int(loaded.get("global_step", 0))
            info["samples"] = {"step": step, "seen": step * old_batch, "base_batch": old_batch}
        self._say(
            f"resuming with another shape ({'; '.join(changes)}): data position, schedules and stop "
            "point kept in samples"
        )
