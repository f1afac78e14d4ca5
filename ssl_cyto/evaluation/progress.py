"""Progress of the evaluation commands: one plain line per stage on stderr, with the elapsed time.

Plain lines rather than a progress bar, so a SLURM log (no terminal) reads the same as a terminal:
``probe: [  12.3 s] linear probe and kNN of simclr (tiny_cnn) on bm-mll``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Stages"]


class Stages:
    """Prints ``<command>: [<elapsed> s] <message>`` for each stage (nothing when ``quiet``)."""

    def __init__(self, command: str, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.command = command
        self.quiet = quiet
        self.stream = stream
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.t0

    def __call__(self, message: str) -> None:
        """Print one stage line."""
        if not self.quiet:
            print(
                f"{self.command}: [{self.elapsed:7.1f} s] {message}",
                file=self.stream or sys.stderr,
                flush=True,
            )
