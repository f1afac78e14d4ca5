"""Per-step schedules of the SSL tasks: learning-rate scaling, linear warm-up, cosine decay.

Learning-rate rule: the optimiser runs at ``lr * global_batch / 256`` (``lr_scaling="linear"``,
Goyal et al. 2017; SimCLR and DINO both state base rates this way), or ``lr * sqrt(global_batch / 256)``
(``"sqrt"``), or ``lr`` (``"none"``), where ``global_batch = batch size per device x devices x
gradient accumulation`` is measured from the first training batch.

Every schedule is a pure function of ``trainer.global_step`` and of the run's length in steps, so
every rank computes the same values and resuming from a checkpoint continues them exactly.

Schedules are kept in samples across a reshape (``--run.allow_reshape``: a resume with another global
batch). Each checkpoint records ``{"step", "seen", "base_batch"}`` (:meth:`ScheduleMixin.sample_state`):
the samples seen at its step and the global batch the run's ``max_steps`` and ``warmup_steps`` count in
(the first shape's). A resumed run places every step on the *schedule step*
``(seen + (step - record step) x global batch) / base_batch`` (:meth:`ScheduleMixin.schedule_step`), and
its stop point becomes ``record step + (max_steps x base_batch - seen) / global batch``
(:meth:`ScheduleMixin.restore_sample_state`): with half the global batch, twice the steps, the same
samples, and the LR a step has is the one the unreshaped run had at the same number of samples (times
the ``lr_scaling`` of the new batch). Without a reshape the schedule step is the step itself. A
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

    #: ``{"step", "seen", "base_batch"}`` of the checkpoint resumed from (None: a fresh run).
    sample_record: dict[str, int] | None = None

    def current_global_batch(self) -> int | None:
        """Samples per optimiser step now: the data module's batch size x ranks x gradient accumulation
        (else the one measured from the first batch; None before any is known)."""
        t = self._trainer_or_none()
        bs = getattr(getattr(t, "datamodule", None), "batch_size", None) if t is not None else None
        if isinstance(bs, int) and bs > 0 and t is not None:
            return bs * int(t.world_size) * int(t.accumulate_grad_batches)
        return self._global_batch

    def _trainer_or_none(self) -> Any:
        return getattr(self, "_trainer", None)

    def _reshaped(self) -> tuple[dict[str, int], int] | None:
        """``(record, global batch now)`` when the record's step does not count in the current batch."""
        rec, g = self.sample_record, self.current_global_batch()
        if not rec or not g or (rec["base_batch"] == g and rec["seen"] == rec["step"] * g):
            return None
        return rec, g

    def schedule_step(self, step: int) -> float:
        """``step`` on the run's schedule, in steps of ``base_batch`` samples (``step`` itself unless the
        run was reshaped; see the module docstring)."""
        shaped = self._reshaped()
        if shaped is None:
            return step
        rec, g = shaped
        return (rec["seen"] + (step - rec["step"]) * g) / rec["base_batch"]

    def sample_state(self, step: int) -> dict[str, int] | None:
        """The record a checkpoint at ``step`` carries (None while the global batch is unknown)."""
        g = self.current_global_batch()
        if not g:
            return None
        base = self.sample_record["base_batch"] if self._reshaped() and self.sample_record else g
        return {"step": int(step), "seen": int(round(self.schedule_step(step) * base)), "base_batch": base}

    def restore_sample_state(self, record: dict[str, int] | None) -> None:
        """Take a checkpoint's record; after a reshape, move the trainer's ``max_steps`` (counted in
        ``base_batch`` samples) to the step where the same number of samples is reached."""
        self.sample_record = dict(record) if record else None
        shaped = self._reshaped()
        t = self._trainer_or_none()
        if shaped is None or t is None or int(t.fit_loop.max_steps) <= 0:
            return
        rec, g = shaped
        left = int(t.fit_loop.max_steps) * rec["base_batch"] - rec["seen"]
        t.fit_loop.epoch_loop.max_steps = rec["step"] + max(0, -(-left // g))

    def total_steps(self) -> int:
        """Optimiser steps of the whole run: :attr:`step_budget` when set, else
        ``trainer.estimated_stepping_batches`` (10**6 if open-ended)."""
        steps = self.trainer.estimated_stepping_batches
        total = max(1, int(steps)) if math.isfinite(steps) else 10**6
        return min(total, int(self.step_budget)) if self.step_budget else total

    def run_fraction(self, step: int) -> float:
        """How far the run is, in [0, 1]: ``step / total_steps()`` on the schedule (in samples after a
        reshape). The DINO momentum and weight-decay schedules use it; a pure function of the step."""
        return min(1.0, self.schedule_step(step) / self.schedule_step(self.total_steps()))

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

    def schedule_epoch_steps(self) -> float:
        """An epoch in schedule steps: :meth:`steps_per_epoch` (in steps of the current global batch)
        converted to steps of ``base_batch`` samples after a reshape."""
        shaped = self._reshaped()
        per_base = shaped[1] / shaped[0]["base_batch"] if shaped else 1.0
        return self.steps_per_epoch() * per_base

    def epochs_at(self, step: int) -> float:
        """Epochs of data trained at ``step`` (``step / steps_per_epoch()``, in samples after a reshape)."""
        return self.schedule_step(step) / self.schedule_epoch_steps()

    def warmup_length(self) -> int:
        """Warm-up steps (on the schedule): ``warmup_steps`` when set, else ``warmup_epochs`` x steps
        per epoch."""
        h = self.hp
        warm = (
            h.warmup_steps
            if h.warmup_steps is not None
            else int(round(h.warmup_epochs * self.schedule_epoch_steps()))
        )
        return min(int(warm), int(self.schedule_step(self.total_steps())) - 1)

    def lr_at(self, step: int, batch_size: int) -> float:
        """Linear warm-up to the peak (step ``i`` at ``(i + 1) / warm``), then cosine decay to
        ``min_lr_ratio * peak`` over the rest of the run (both on :meth:`schedule_step`)."""
        total, at = self.schedule_step(self.total_steps()), self.schedule_step(step)
        peak, warm = self.peak_lr(batch_size), self.warmup_length()
        if at < warm and peak > 0:
            return float(linear_warmup_schedule(at + 1, warm, 0.0, peak))  # type: ignore[arg-type]
        progress = min(1.0, (at - warm) / max(1, total - warm))
        return cosine_at(progress, peak, self.hp.min_lr_ratio * peak)
