"""Progress of every long step, in one place: a tqdm bar on a terminal, plain lines in a log file
(:func:`progress_bar`), and one timed line per stage of a command (:class:`Stages`; the evaluation
commands and the demo). ``ssl-cyto fit``'s own progress lines are
:class:`ssl_cyto.training.callbacks.ProgressLines`, which uses :func:`is_terminal` from here.

On a terminal (stderr is a TTY) :func:`progress_bar` is an ordinary tqdm bar. Written to a file or
a pipe (a SLURM log, ``2> log.txt``), carriage-return redraws would pile up as one unreadable line,
so the bar is then one plain line every :data:`LOG_INTERVAL_S` seconds (and a last one when it
closes), each with the count, the rate and the ETA::

    embed: 1200/4800 cell (25%), 40.1 cell/s, elapsed 00:30, ETA 01:29

``SSL_CYTO_PROGRESS_INTERVAL`` (seconds) changes the interval of the plain lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "PLAIN_FORMAT", "LineWriter", "Stages", "is_terminal", "progress_bar"]

LOG_INTERVAL_S = 30.0
PLAIN_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, ETA {remaining}"
)
PLAIN_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}"


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class LineWriter:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines.

    Args:
        stream: where the lines go (stderr).
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        """Write each non-empty status as its own line."""
        for part in text.replace("\r", "\n").split("\n"):
            line = part.strip()
            if line:
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self.stream.flush()


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SSL_CYTO_PROGRESS_INTERVAL", LOG_INTERVAL_S)))
    except ValueError:
        return LOG_INTERVAL_S


def progress_bar(
    iterable: Any = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    stream: IO[str] | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr: interactive on a terminal, plain timed lines with rate and ETA otherwise.

    Args:
        iterable: optional iterable to wrap (as ``tqdm(iterable)``).
        total: the expected count (the ETA needs it).
        desc: the label at the start of the line.
        unit: what is counted (``cell``, ``file``, ``shard``).
        disable: no output at all.
        stream: where to write (default ``sys.stderr``).
        **kwargs: passed to ``tqdm`` (e.g. ``smoothing``).

    Returns:
        The ``tqdm`` object (use ``update``, ``write``, ``close`` or iterate it).
    """
    out = sys.stderr if stream is None else stream
    if is_terminal(out):
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            disable=disable,
            file=out,
            dynamic_ncols=True,
            **kwargs,
        )
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    fmt = PLAIN_FORMAT if total else PLAIN_FORMAT_NO_TOTAL
    interval = _interval()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        file=LineWriter(out),
        bar_format=fmt,
        mininterval=interval,
        maxinterval=max(interval, 1.0),
        miniters=1,
        ascii=True,
        **kwargs,
    )


class Stages:
    """Prints ``<command>: [<elapsed> s] <message>`` for each stage on stderr (nothing when ``quiet``).

    Plain lines rather than a bar, so a SLURM log (no terminal) reads the same as a terminal:
    ``probe: [  12.3 s] linear probe and kNN of simclr (tiny_cnn) on bm-mll``.

    Args:
        command: the label at the start of each line.
        quiet: print nothing.
        stream: where to write (default ``sys.stderr`` at the time of each line).
    """

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
