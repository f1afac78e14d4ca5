"""Per-step schedules of the SSL tasks: learning-rate scaling, linear warm-up, cosine decay.

Learning-rate rule: the optimiser runs at ``lr * global_batch / 256`` (``lr_scaling="linear"``,
Goyal et al. 2017; SimCLR and DINO both state base rates this way), or ``lr * sqrt(global_batch / 256)``
(``"sqrt"``), or ``lr`` (``"none"``), where ``global_batch = batch size per device x devices x
gradient accumulation`` is measured from the first training batch.

Every schedule is a pure function of ``trainer.global_step`` and of the run's length in steps, so
every rank computes the same values and resuming from a checkpoint continues them exactly. A
time-capped run (``trainer.max_time``) has its length in steps fixed once, the same on every rank,
by :class:`ssl_cyto.training.callbacks.step_budget.StepBudget`, which sets :attr:`ScheduleMixin.step_budget`
(until then - the first few timed steps, inside the warm-up in practice - the length is the one the
trainer estimates). Wall time is never read: each rank's own clock would give each rank its own
learning rate (issue 11). The curves are lightly's (:func:`lightly.utils.scheduler.linear_warmup_schedule`
and :func:`~lightly.utils.scheduler.cosine_schedule`); the run fraction is mapped onto a grid of
:data:`GRID` steps.
"""

from __future__ import annotations

import math
from typing import Any

from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule

#: Resolution of the run-fraction grid the cosine schedules are evaluated on.
GRID = 10**6


def cosine_at(fraction: float, start: float, end: float) -> float:
    """Cosine from ``start`` (fraction 0) to ``end`` (fraction 1), via lightly's ``cosine_schedule``."""
    step = int(round(min(1.0, max(0.0, fraction)) * GRID))
    return float(cosine_schedule(step, GRID + 1, start, end))


class ScheduleMixin:
    """Schedules of a LightningModule with ``hparams`` ``lr``, ``lr_scaling``, ``warmup_steps``,
    ``warmup_epochs`` and ``min_lr_ratio`` (mixed into :class:`ssl_cyto.tasks.base.SSLTask`)."""

    trainer: Any
    hp: Any
    _global_batch: int | None = None

    #: Run length in optimiser steps fixed by ``StepBudget`` for a time-capped run (None: not fixed).
    step_budget: int | None = None

    def total_steps(self) -> int:
        """Optimiser steps of the whole run: :attr:`step_budget` when set, else
        ``trainer.estimated_stepping_batches`` (10**6 if open-ended)."""
        steps = self.trainer.estimated_stepping_batches
        total = max(1, int(steps)) if math.isfinite(steps) else 10**6
        return min(total, int(self.step_budget)) if self.step_budget else total

    def run_fraction(self, step: int) -> float:
        """How far the run is, in [0, 1]: ``step / total_steps()``. The DINO momentum and weight-decay
        schedules use it; a pure function of the step on every rank."""
        return min(1.0, step / self.total_steps())

    def steps_per_epoch(self) -> float:
        """Optimiser steps per epoch (from the train loader's length, else total steps / max_epochs)."""
        t = self.trainer
        nb = t.num_training_batches
        if isinstance(nb, int | float) and math.isfinite(nb) and nb > 0:
            return max(1.0, nb / t.accumulate_grad_batches)
        return self.total_steps() / max(1, t.max_epochs or 1)

    def peak_lr(self, batch_size: int) -> float:
        """Base ``lr`` scaled by ``lr_scaling`` with the global batch (see the module docstring)."""
        if self._global_batch is None:
            t = self.trainer
            self._global_batch = int(batch_size) * t.world_size * t.accumulate_grad_batches
        ratio = self._global_batch / 256.0
        rule = self.hp.lr_scaling
        return self.hp.lr * (ratio if rule == "linear" else math.sqrt(ratio) if rule == "sqrt" else 1.0)

    def warmup_length(self) -> int:
        """Warm-up steps: ``warmup_steps`` when set, else ``warmup_epochs`` x steps per epoch."""
        h = self.hp
        warm = (
            h.warmup_steps
            if h.warmup_steps is not None
            else int(round(h.warmup_epochs * self.steps_per_epoch()))
        )
        return min(int(warm), self.total_steps() - 1)

    def lr_at(self, step: int, batch_size: int) -> float:
        """Linear warm-up to the peak (step ``i`` at ``(i + 1) / warm``), then cosine decay to
        ``min_lr_ratio * peak`` over the rest of the run."""
        total, peak, warm = self.total_steps(), self.peak_lr(batch_size), self.warmup_length()
        if step < warm and peak > 0:
            return float(linear_warmup_schedule(step + 1, warm, 0.0, peak))
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return cosine_at(progress, peak, self.hp.min_lr_ratio * peak)
