"""The preemption signal flag, importable without torch so ``ssl-cyto fit`` installs it first thing.

A signal that arrives while the run imports torch, builds the model or initialises DDP is recorded,
not fatal: the :class:`~ssl_cyto.training.callbacks.preemption.Preemption` callback adopts the flag
installed at the command-line entry (:func:`install_early`) and stops the run, with a checkpoint, as
soon as training starts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["DEFAULT_SIGNALS", "PreemptionFlag", "early_flag", "early_signals"]

#: Signals that make a run checkpoint and stop (SLURM: ``--signal=SIGUSR1@90``; SIGTERM at preemption).
DEFAULT_SIGNALS = ("SIGUSR1", "SIGTERM")

_EARLY: PreemptionFlag | None = None


class PreemptionFlag:
    """Signal handler that only records the signal, and only in the process it was installed in.

    Args:
        step: returns the current global step, recorded with the signal (for the log line).
    """

    def __init__(self, step: Callable[[], int] | None = None) -> None:
        self.pid: int | None = None
        self.signal_name: str | None = None
        self.step_at_signal: int | None = None
        self._step = step

    @property
    def requested(self) -> bool:
        """A signal arrived in this process."""
        return self.signal_name is not None

    def set_step(self, step: Callable[[], int] | None) -> None:
        """Record the global step from ``step()`` with later signals."""
        self._step = step

    def install(self, signals: Iterable[str] = DEFAULT_SIGNALS) -> None:
        """Become the handler of ``signals`` in this process (main thread only)."""
        self.pid = os.getpid()
        for name in signals:
            signal.signal(getattr(signal, name), self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid or self.signal_name is not None:
            return  # a forked loader worker, or a repeated signal
        self.signal_name = signal.Signals(signum).name
        self.step_at_signal = self._step() if self._step is not None else None


def early_flag() -> PreemptionFlag | None:
    """The flag installed by :func:`early_signals` in this process, if any."""
    return _EARLY if _EARLY is not None and _EARLY.pid == os.getpid() else None


@contextmanager
def early_signals(signals: Iterable[str] = DEFAULT_SIGNALS) -> Iterator[PreemptionFlag]:
    """Install a fresh flag for ``signals`` for the duration of a command (the handlers found are restored)."""
    global _EARLY
    names = list(signals)
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names}
    flag = PreemptionFlag()
    flag.install(names)
    _EARLY = flag
    try:
        yield flag
    finally:
        _EARLY = None
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
