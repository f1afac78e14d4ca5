"""Per-step schedules of the SSL tasks: learning-rate scaling, linear warm-up, cosine decay.

Learning-rate rule: the optimiser runs at ``lr * global_batch / 256`` (``lr_scaling="linear"``,
Goyal et al. 2017; SimCLR and DINO both state base rates this way), or ``lr * sqrt(global_batch / 256)``
(``"sqrt"``), or ``lr`` (``"none"``), where ``global_batch = batch size per device x devices x
gradient accumulation`` is measured from the first training batch.

Every schedule is a pure function of ``trainer.global_step`` (and of the wall-time fraction when the
trainer has a ``max_time``), so resuming from a checkpoint continues it exactly. The curves are
lightly's (:func:`lightly.utils.scheduler.linear_warmup_schedule` and
:func:`~lightly.utils.scheduler.cosine_schedule`); the run fraction is mapped onto a grid of
:data:`GRID` steps, so a wall-time-capped run decays on the same curve as a step-capped one.
"""

from __future__ import annotations

import math
from typing import Any

from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule
from pytorch_lightning.callbacks import Timer

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

    def total_steps(self) -> int:
        """Optimiser steps of the whole run (``trainer.estimated_stepping_batches``; 10**6 if open-ended)."""
        steps = self.trainer.estimated_stepping_batches
        return max(1, int(steps)) if math.isfinite(steps) else 10**6

    def time_fraction(self) -> float:
        """Wall-time fraction of the run in [0, 1] when the trainer has a ``max_time``, else 0."""
        for cb in getattr(self.trainer, "callbacks", None) or []:
            if isinstance(cb, Timer):
                elapsed, remaining = cb.time_elapsed("train"), cb.time_remaining("train")
                if remaining is not None and elapsed + remaining > 0:
                    return min(1.0, elapsed / (elapsed + remaining))
        return 0.0

    def run_fraction(self, step: int) -> float:
        """How far the run is, in [0, 1]: the larger of the step fraction and the wall-time fraction.
        Schedules (LR, DINO momentum and weight decay) use it, so a time-capped run (``ssl-cyto demo``,
        ``trainer.max_time``) still completes its decay before the time is up."""
        return max(min(1.0, step / self.total_steps()), self.time_fraction())

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
        warm = h.warmup_steps if h.warmup_steps is not None else int(round(h.warmup_epochs * self.steps_per_epoch()))
        return min(int(warm), self.total_steps() - 1)

    def lr_at(self, step: int, batch_size: int) -> float:
        """Linear warm-up to the peak (step ``i`` at ``(i + 1) / warm``), then cosine decay to
        ``min_lr_ratio * peak`` over the rest of the run (or of its wall time)."""
        total, peak, warm = self.total_steps(), self.peak_lr(batch_size), self.warmup_length()
        if step < warm and peak > 0:
            return float(linear_warmup_schedule(step + 1, warm, 0.0, peak))
        progress = max(min(1.0, (step - warm) / max(1, total - warm)), self.time_fraction())
        return cosine_at(progress, peak, self.hp.min_lr_ratio * peak)
