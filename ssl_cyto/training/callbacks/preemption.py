"""Preemption: on SIGUSR1 / SIGTERM, every rank stops at the next step boundary after one checkpoint,
and rank 0 requeues the SLURM job once (see :mod:`ssl_cyto.training.preemption` for why)."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytorch_lightning as pl

from ssl_cyto.training.callbacks.last_checkpoint import LastCheckpoint
from ssl_cyto.training.preemption import (
    CHECKPOINT_DIR,
    Preempted,
    PreemptionFlag,
    PreemptionSignals,
    requeue_job,
    slurm_job_id,
)


class Preemption(pl.Callback):
    """Checkpoint once and stop on a preemption signal; requeue the SLURM job from rank 0.

    The signal handler only sets a flag in the main process (loader workers ignore it). After each
    optimiser step every rank contributes its flag to one all-reduce (a boolean, negligible next to
    a step), so all ranks stop at the same step: they write ``last.ckpt`` once through the
    :class:`~ssl_cyto.training.callbacks.LastCheckpoint` callback (atomically), rank 0 then calls
    ``scontrol requeue $SLURM_JOB_ID`` once (under SLURM, when ``requeue``), and every rank raises
    :class:`~ssl_cyto.training.preemption.Preempted`, which ``ssl-cyto fit`` turns into exit status
    130 with the message "rerun the same command to resume". The requeued job, running the same
    command, resumes from that checkpoint.

    Args:
        signals: the signals that preempt (``SIGUSR1`` is what ``#SBATCH --signal=SIGUSR1@90`` sends;
            ``SIGTERM`` is what SLURM preemption, ``scancel`` and most schedulers send).
        requeue: call ``scontrol requeue`` under SLURM (``false``: checkpoint and stop only).
    """

    def __init__(self, signals: list[str] | None = None, requeue: bool = True) -> None:
        super().__init__()
        self.signals = list(signals) if signals is not None else ["SIGUSR1", "SIGTERM"]
        bad = [s for s in self.signals if s not in ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP")]
        if bad:
            raise ValueError(f"preemption.signals: unsupported {bad}; use SIGUSR1, SIGUSR2, SIGTERM, SIGHUP")
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
        self.flag = PreemptionFlag(step=lambda: int(trainer.global_step))
        # Lightning installs its own SIGTERM handler at the start of fit through this connector (and
        # offers no switch); ours installs the flag there instead.
        trainer._signal_connector = PreemptionSignals(trainer, self.flag, self.signals)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step == self._checked_step:  # a gradient-accumulation micro-batch: no optimiser step yet
            return
        self._checked_step = step
        if not trainer.strategy.reduce_boolean_decision(self.flag.requested, all=False):
            return
        self._stop(trainer)

    def _stop(self, trainer: pl.Trainer) -> None:
        name = self.flag.signal_name or "a signal on another rank"
        step = int(trainer.global_step)
        self.history.append({"signal": name, "step": step, "job": slurm_job_id()})
        path = _save(trainer)
        requeued = False
        job = slurm_job_id()
        if trainer.is_global_zero:
            seen = "" if self.flag.step_at_signal is None else f" after step {self.flag.step_at_signal}"
            where = f"saved step {step} to {path}" if path else "no checkpoint saved (the collapse guard tripped)"
            print(f"ssl-cyto fit: {name} received{seen}; {where}", file=sys.stderr, flush=True)
            if self.requeue and job is not None and path:
                requeued = requeue_job(job)
                if requeued:
                    print(f"ssl-cyto fit: requeued SLURM job {job}", file=sys.stderr, flush=True)
        trainer.strategy.barrier("Preemption.stop")
        raise Preempted(name, step, path, requeued)

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
