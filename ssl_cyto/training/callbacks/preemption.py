"""Preemption: on SIGUSR1 / SIGTERM, every rank stops at the next step boundary after one checkpoint,
and on SIGUSR1 rank 0 requeues the SLURM job once (see :mod:`ssl_cyto.training.preemption` for why)."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytorch_lightning as pl
import torch

from ssl_cyto.training.callbacks.last_checkpoint import LastCheckpoint
from ssl_cyto.training.preemption import (
    CHECKPOINT_DIR,
    DEFAULT_REQUEUE_SIGNALS,
    DEFAULT_SIGNALS,
    Preempted,
    PreemptionFlag,
    PreemptionSignals,
    requeue_job,
    slurm_job_id,
)
from ssl_cyto.training.stop_flag import early_flag

SUPPORTED = ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP")


class Preemption(pl.Callback):
    """Checkpoint once and stop on a preemption signal; requeue the SLURM job from rank 0 on a requeue signal.

    The signal handler only sets a flag in the main process (loader workers ignore it); it is installed
    at the command-line entry (:mod:`ssl_cyto.training.stop_flag`), so a signal during imports, model
    build or DDP set-up stops the run as soon as training starts. After each optimiser step every rank
    contributes its flag to one all-reduce (a boolean, negligible next to a step), so all ranks stop at the
    same step: they write ``last.ckpt`` once through the
    :class:`~ssl_cyto.training.callbacks.LastCheckpoint` callback (atomically), and every rank raises
    :class:`~ssl_cyto.training.preemption.Preempted`.

    * A signal of ``requeue_signals`` (default SIGUSR1, what ``#SBATCH --signal=SIGUSR1@90`` sends): rank
      0 calls ``scontrol requeue $SLURM_JOB_ID`` once (under SLURM, when ``requeue``); ``ssl-cyto fit``
      exits 130 and the requeued job, running the same command, resumes.
    * Any other signal of ``signals`` (default SIGTERM: ``scancel``, a node shutdown): checkpoint and stop
      for good; ``ssl-cyto fit`` exits 128 + the signal number (SIGTERM: 143).
    * A step whose loss is not finite on some rank writes no checkpoint (its weights are not trusted):
      the run stops without a requeue and ``last.ckpt`` stays the last good step.

    Args:
        signals: the signals that stop the run with a checkpoint.
        requeue_signals: those of ``signals`` that also requeue the SLURM job.
        requeue: call ``scontrol requeue`` under SLURM at all (``false``: checkpoint and stop only).
    """

    def __init__(
        self, signals: list[str] | None = None, requeue_signals: list[str] | None = None, requeue: bool = True
    ) -> None:
        super().__init__()
        self.signals = list(signals) if signals is not None else list(DEFAULT_SIGNALS)
        self.requeue_signals = (
            list(requeue_signals) if requeue_signals is not None else list(DEFAULT_REQUEUE_SIGNALS)
        )
        bad = [s for s in {*self.signals, *self.requeue_signals} if s not in SUPPORTED]
        if bad:
            raise ValueError(f"preemption.signals: unsupported {sorted(bad)}; use {', '.join(SUPPORTED)}")
        self.requeue = requeue
        self.flag = PreemptionFlag()
        self.history: list[dict[str, Any]] = []
        self._checked_step = -1

    @property
    def state_key(self) -> str:
        return "Preemption"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.signals:
            return
        early = early_flag()
        if early is not None and early.signal_name not in (None, *self.signals):
            early = None  # a signal this run does not stop on
        self.flag = early if early is not None else PreemptionFlag()
        self.flag.set_step(lambda: int(trainer.global_step))
        # Lightning installs its own SIGTERM handler at the start of fit through this connector (and
        # offers no switch); ours installs the flag there instead.
        trainer._signal_connector = PreemptionSignals(trainer, self.flag, self.signals)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.signals and trainer.strategy.reduce_boolean_decision(self.flag.requested, all=False):
            self._stop(trainer, finite=True)  # signalled while starting up

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step == self._checked_step:  # a gradient-accumulation micro-batch: no optimiser step yet
            return
        self._checked_step = step
        if not trainer.strategy.reduce_boolean_decision(self.flag.requested, all=False):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        finite = not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss.detach()).all())
        self._stop(trainer, finite=trainer.strategy.reduce_boolean_decision(finite, all=True))

    def _stop(self, trainer: pl.Trainer, finite: bool) -> None:
        mine = self.flag.signal_name
        name = trainer.strategy.broadcast(mine, src=0) or mine or "a signal on another rank"
        step = int(trainer.global_step)
        self.history.append({"signal": name, "step": step, "job": slurm_job_id()})
        path = _save(trainer) if finite else None
        requeued = False
        job = slurm_job_id()
        if trainer.is_global_zero:
            seen = "" if self.flag.step_at_signal is None else f" after step {self.flag.step_at_signal}"
            why = "the collapse guard tripped" if finite else "the step's loss is not finite"
            where = f"saved step {step} to {path}" if path else f"no checkpoint saved ({why})"
            print(f"ssl-cyto fit: {name} received{seen}; {where}", file=sys.stderr, flush=True)
            if self.requeue and name in self.requeue_signals and job is not None and path:
                requeued = requeue_job(job)
                if requeued:
                    print(f"ssl-cyto fit: requeued SLURM job {job}", file=sys.stderr, flush=True)
        trainer.strategy.barrier("Preemption.stop")
        raise Preempted(name, step, path, requeued, requeue=name in self.requeue_signals and path is not None)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _save(trainer: pl.Trainer) -> str | None:
    """Write ``last.ckpt`` at this step through the LastCheckpoint callback (or directly without one)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint):
            if cb._blocked(trainer):
                return None
            if cb._last_global_step_saved != trainer.global_step or not os.path.isfile(cb.last_model_path):
                cb._save_last_checkpoint(trainer, cb._monitor_candidates(trainer))
            return str(cb.last_model_path)
    path = os.path.join(str(trainer.default_root_dir), CHECKPOINT_DIR, "last.ckpt")
    trainer.save_checkpoint(path)
    return path
