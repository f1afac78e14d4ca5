"""``ProgressLines``: a training log you can follow in a file.

A SLURM log (or any output that is not a terminal) gets, from rank 0 only, one line every
``every_s`` seconds and one at the end::

    fit: step 1200/50000 (2%), loss 5.412, 812 img/s, elapsed 00:25:03, ETA 16:56:40, kNN 0.412

Images per second count every view of every cell on every rank. The ETA uses the rate since the last
line. The total is the trainer's ``max_steps`` (or the :class:`StepBudget` once decided). A terminal keeps
Lightning's progress bar and gets no lines (unless ``enabled=true``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from ssl_cyto.formats.progress import is_terminal
from ssl_cyto.training.callbacks.online_knn import OnlineKNN

__all__ = ["ProgressLines", "hms"]


def hms(seconds: float) -> str:
    """``HH:MM:SS`` (``--:--:--`` when unknown)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "--:--:--"
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _images(batch: Any) -> int:
    views = batch if isinstance(batch, list | tuple) else [batch]
    return sum(int(v.shape[0]) for v in views if isinstance(v, torch.Tensor))


def total_steps(trainer: pl.Trainer) -> int | None:
    """The run's length in optimiser steps when known (``max_steps``, set by the step budget too)."""
    max_steps = trainer.fit_loop.epoch_loop.max_steps
    if max_steps is not None and max_steps > 0:
        return int(max_steps)
    try:
        est = trainer.estimated_stepping_batches
    except Exception:  # no length known (an endless stream)
        return None
    return int(est) if est not in (None, float("inf")) and est > 0 else None


class ProgressLines(pl.Callback):
    """One progress line every ``every_s`` seconds when the output is not a terminal (rank 0 only).

    Args:
        every_s: seconds between lines (``--progress.every_s``).
        enabled: ``true``/``false`` to force the lines on or off; ``null``: on when stderr is not a
            terminal.

    Attributes:
        clock: the time source (``time.monotonic``; tests set a fake one).
        lines: the lines printed.
    """

    def __init__(self, every_s: float = 30.0, enabled: bool | None = None) -> None:
        super().__init__()
        if every_s <= 0:
            raise ValueError(f"progress.every_s must be > 0 (got {every_s})")
        self.every_s = float(every_s)
        self.enabled = enabled
        self.clock: Callable[[], float] = time.monotonic
        self.lines: list[str] = []
        self._active = False
        self._t0 = self._t_last = 0.0
        self._step_last = 0
        self._images = 0
        self._loss: float | None = None

    def _on(self) -> bool:
        return self.enabled if self.enabled is not None else not is_terminal(sys.stderr)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = trainer.is_global_zero and self._on()
        self._t0 = self._t_last = self.clock()
        self._step_last = int(trainer.global_step)
        self._images = 0
        if self._active:
            total = total_steps(trainer)
            self._emit(
                f"fit: training from step {trainer.global_step} to {total or '?'} on {trainer.world_size} rank(s)"
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._active:
            return
        self._images += _images(batch) * trainer.world_size
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss = float(loss.detach().float().mean())
        if self.clock() - self._t_last >= self.every_s:
            self._line(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active and int(trainer.global_step) != self._step_last:
            self._line(trainer)

    def _line(self, trainer: pl.Trainer) -> None:
        now = self.clock()
        step = int(trainer.global_step)
        dt = max(now - self._t_last, 1e-9)
        per_step = dt / max(step - self._step_last, 1)
        total = total_steps(trainer)
        parts = [
            f"fit: step {step}/{total}" + (f" ({100 * step / total:.0f}%)" if total else "")
            if total
            else f"fit: step {step}"
        ]
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4g}")
        parts.append(f"{self._images / dt:.0f} img/s")
        parts.append(f"elapsed {hms(now - self._t0)}")
        if total:
            parts.append(f"ETA {hms((total - step) * per_step)}")
        knn = [cb for cb in trainer.callbacks if isinstance(cb, OnlineKNN) and cb.history]  # type: ignore[attr-defined]
        if knn:
            parts.append(f"kNN {knn[0].history[-1][1]:.3f}")
        self._emit(", ".join(parts))
        self._t_last, self._step_last, self._images = now, step, 0

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)
