"""``StepBudget``: a time-capped run (``trainer.max_time``) becomes a run of a fixed number of steps.

Schedules that follow each process's own clock give each rank its own learning rate, and DDP never
re-syncs the replicas (issue 11: parameters 5.96e-8 apart after a few steps). This callback decides
the run's length in optimiser steps once, on rank 0, broadcasts it, and stores it in the checkpoint:

1. it times ``probe_steps`` training batches (default: one epoch, so the epoch-end validation is
   included; at most 200), starting after the first batch of the run (start-up is not a rate);
2. rank 0 turns the time left (Lightning's ``Timer``) into steps: ``budget = step + safety x time
   left / seconds per step``, capped by ``trainer.max_steps`` when set;
3. the budget is broadcast (``trainer.strategy.broadcast``), set as the task's
   :attr:`~ssl_cyto.tasks.schedule.ScheduleMixin.step_budget` (the LR, momentum and weight-decay
   schedules decay over it) and as the trainer's ``max_steps`` (the run ends there, on every rank at
   the same step), and saved in ``checkpoint["callbacks"]["StepBudget"]``: a resumed run keeps it.

Lightning's ``Timer`` stays as the safety net: a run much slower than its probe still stops at
``max_time`` (all ranks agree on stopping; the decay is then unfinished). Without ``max_time`` the
callback does nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

MAX_PROBE_STEPS = 200


def trainer_timer(trainer: pl.Trainer) -> Timer | None:
    """The trainer's ``Timer`` callback (``trainer.max_time``), or None."""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, Timer):
            return cb
    return None


class StepBudget(pl.Callback):
    """Fix the step count of a ``max_time`` run once, the same on every rank (see the module docstring).

    Args:
        probe_steps: training batches timed before deciding (None: one epoch, at most 200).
        safety: fraction of the time left that the budget plans to use (the rest absorbs slower
            steps, validation and checkpoints).

    Attributes:
        budget: the decided run length in optimiser steps (None until decided).
    """

    def __init__(self, probe_steps: int | None = None, safety: float = 0.9) -> None:
        if probe_steps is not None and probe_steps < 1:
            raise ValueError(f"budget.probe_steps must be >= 1 or null (got {probe_steps})")
        if not 0 < safety <= 1:
            raise ValueError(f"budget.safety must be in (0, 1] (got {safety})")
        self.probe_steps = probe_steps
        self.safety = float(safety)
        self.budget: int | None = None
        self._t0: float | None = None
        self._step0 = 0

    @property
    def state_key(self) -> str:
        return "StepBudget"

    def state_dict(self) -> dict[str, Any]:
        return {"budget": self.budget}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        budget = state_dict.get("budget")
        self.budget = None if budget is None else int(budget)

    def _probe_length(self, trainer: pl.Trainer) -> int:
        if self.probe_steps is not None:
            return int(self.probe_steps)
        nb = trainer.num_training_batches
        per_epoch = (
            int(nb) if isinstance(nb, int | float) and nb != float("inf") and nb > 0 else MAX_PROBE_STEPS
        )
        return max(1, min(MAX_PROBE_STEPS, per_epoch // max(1, trainer.accumulate_grad_batches)))

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.budget is not None
        pl_module.step_budget = self.budget  # type: ignore[assignment]
        trainer.fit_loop.epoch_loop.max_steps = self.budget

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.budget is not None:  # restored from a checkpoint
            self._apply(trainer, pl_module)
        self._t0 = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.budget is not None or trainer_timer(trainer) is None:
            return
        step = int(trainer.global_step)
        if self._t0 is None:  # the first batch of this process's run: start the clock after it
            self._t0, self._step0 = time.monotonic(), step
            return
        if step - self._step0 < self._probe_length(trainer):
            return
        budget = self._decide(trainer, step) if trainer.is_global_zero else 0
        self.budget = int(trainer.strategy.broadcast(budget, src=0))
        self._apply(trainer, pl_module)

    def _decide(self, trainer: pl.Trainer, step: int) -> int:
        """Rank 0: the run length in steps from the measured rate and the time left."""
        timer = trainer_timer(trainer)
        assert timer is not None and self._t0 is not None
        per_step = (time.monotonic() - self._t0) / max(1, step - self._step0)
        left = timer.time_remaining("train") or 0.0
        budget = step + int(self.safety * left / max(per_step, 1e-9))
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps > 0:
            budget = min(budget, int(max_steps))
        return max(step + 1, budget)
