"""``StepBudget``: a time-capped run (``trainer.max_time``) becomes a run of a fixed number of steps.

Schedules that follow each process's own clock give each rank its own learning rate, and DDP never
re-syncs the replicas (issue 11: parameters 5.96e-8 apart after a few steps). This callback decides
the run's length in optimiser steps once, on rank 0, broadcasts it, and stores it in the checkpoint:

1. it measures, after the first batch of the run (start-up is not a rate), the time of a training step
   (the median interval between optimiser steps) and the time of the work at an epoch end (online kNN,
   collapse check, checkpoint, the loader's restart: the interval across an epoch boundary less one
   step). The probe lasts ``probe_steps`` steps, or by default until one epoch boundary has been crossed
   (at most 200 steps);
2. rank 0 plans the steps that fit in the time left (Lightning's ``Timer``): every step and every epoch
   end on the way, and one epoch end's work for the end of training, within ``safety`` (default 0.98)
   of the time left (:func:`plan_steps`); capped by ``trainer.max_steps`` when set. When no epoch
   boundary fell in the probe, the plan is made once more, the same way, at the first boundary;
3. the budget is broadcast (``trainer.strategy.broadcast``), set as the task's
   :attr:`~ssl_cyto.tasks.schedule.ScheduleMixin.step_budget` (the LR, momentum and weight-decay
   schedules decay over it) and as the trainer's ``max_steps`` (the run ends there, on every rank at
   the same step), and saved in ``checkpoint["callbacks"]["StepBudget"]``: a resumed run keeps it.

Before, the budget was ``0.9 x time left / (time per step, epoch ends averaged in)``: a 25-minute demo
left 194 s of its pretraining budget unused. Lightning's ``Timer`` stays as the safety net: a run much
slower than its probe still stops at ``max_time`` (all ranks agree on stopping; the decay is then
unfinished). Without ``max_time`` the callback does nothing.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
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


def plan_steps(
    step: int,
    left: float,
    per_step: float,
    overhead: float,
    steps_per_epoch: int | None,
    into_epoch: int,
    safety: float,
) -> int:
    """The last step of a run that fits in ``safety x left`` seconds from ``step``.

    Args:
        step: the current global step.
        left: seconds left.
        per_step: seconds per optimiser step.
        overhead: seconds of an epoch end's work (one more is kept for the end of training).
        steps_per_epoch: optimiser steps per epoch (None: no epoch ends).
        into_epoch: steps of the current epoch already done.
        safety: the fraction of ``left`` planned.
    """
    t = safety * left - overhead
    per_step = max(per_step, 1e-9)
    n = 0
    room = (steps_per_epoch - into_epoch) if steps_per_epoch else None
    while t > 0:
        k = int(t // per_step)
        if room is None or k < room:
            n += k
            break
        n += room
        t -= room * per_step + overhead
        room = steps_per_epoch
    return step + max(n, 1)


class StepBudget(pl.Callback):
    """Fix the step count of a ``max_time`` run once, the same on every rank (see the module docstring).

    Args:
        probe_steps: steps timed before deciding (None: until one epoch boundary is crossed, at most 200).
        safety: fraction of the time left that the budget plans to use (the rest absorbs jitter).

    Attributes:
        budget: the decided run length in optimiser steps (None until decided).
        clock: the time source (``time.monotonic``; tests set a fake one).
    """

    def __init__(self, probe_steps: int | None = None, safety: float = 0.98) -> None:
        if probe_steps is not None and probe_steps < 1:
            raise ValueError(f"budget.probe_steps must be >= 1 or null (got {probe_steps})")
        if not 0 < safety <= 1:
            raise ValueError(f"budget.safety must be in (0, 1] (got {safety})")
        self.probe_steps = probe_steps
        self.safety = float(safety)
        self.budget: int | None = None
        self.clock: Callable[[], float] = time.monotonic
        self._marks: list[tuple[int, float, bool]] = []  # (step, time, an epoch ended before it)
        self._epoch_ended = False
        self._refine = False

    @property
    def state_key(self) -> str:
        return "StepBudget"

    def state_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "refine": self._refine}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        budget = state_dict.get("budget")
        self.budget = None if budget is None else int(budget)
        self._refine = bool(state_dict.get("refine", False))

    def _steps_per_epoch(self, trainer: pl.Trainer) -> int | None:
        nb = trainer.num_training_batches
        if not isinstance(nb, int | float) or nb == float("inf") or nb <= 0:
            return None
        return max(1, int(nb) // max(1, trainer.accumulate_grad_batches))

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.budget is not None
        pl_module.step_budget = self.budget  # type: ignore[assignment]
        trainer.fit_loop.epoch_loop.max_steps = self.budget

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.budget is not None:  # restored from a checkpoint
            self._apply(trainer, pl_module)
        self._marks = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_ended = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer_timer(trainer) is None or (self.budget is not None and not self._refine):
            return
        step = int(trainer.global_step)
        if self._marks and self._marks[-1][0] == step:
            return  # a gradient-accumulation micro-batch
        self._marks.append((step, self.clock(), self._epoch_ended))
        self._epoch_ended = False
        crossed = any(m[2] for m in self._marks[1:])
        if self._refine:
            if crossed:
                self._decide_and_apply(trainer, pl_module, batch_idx)
                self._refine = False
            return
        probed = step - self._marks[0][0]
        if self.probe_steps is not None:
            if probed < self.probe_steps:
                return
        elif not (crossed and probed >= 2) and probed < MAX_PROBE_STEPS:
            return
        self._decide_and_apply(trainer, pl_module, batch_idx)
        self._refine = not crossed and self._steps_per_epoch(trainer) is not None

    def _decide_and_apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int) -> None:
        budget = self._decide(trainer, batch_idx) if trainer.is_global_zero else 0
        self.budget = int(trainer.strategy.broadcast(budget, src=0))
        self._apply(trainer, pl_module)

    def rates(self) -> tuple[float, float]:
        """``(seconds per step, seconds of an epoch end's work)`` measured so far."""
        plain: list[float] = []
        across: list[float] = []
        for (s0, t0, _), (s1, t1, ended) in itertools.pairwise(self._marks):
            (across if ended else plain).append((t1 - t0) / max(1, s1 - s0))
        per_step = statistics.median(plain) if plain else (statistics.median(across) if across else 0.0)
        overhead = max(0.0, statistics.mean(across) - per_step) if across else 0.0
        return per_step, overhead

    def _decide(self, trainer: pl.Trainer, batch_idx: int) -> int:
        """Rank 0: the run length in steps from the measured rates and the time left."""
        timer = trainer_timer(trainer)
        assert timer is not None
        step = int(trainer.global_step)
        per_step, overhead = self.rates()
        spe = self._steps_per_epoch(trainer)
        into = min(spe, (batch_idx + 1) // max(1, trainer.accumulate_grad_batches)) if spe else 0
        left = timer.time_remaining("train") or 0.0
        budget = plan_steps(step, left, per_step, overhead, spe, into, self.safety)
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps > 0:
            budget = min(budget, int(max_steps))
        return max(step + 1, budget)
