"""Rules every command applies the same way: outputs checked before any work, missing cells counted.

* :func:`check_output_file` / :func:`check_output_dir` - run first in a command's ``run``: an output
  that cannot be created is an :class:`~ssl_cyto.formats.errors.OutputError` (one line, exit 2)
  before anything is computed, and the check leaves no folder behind;
* :func:`add_allow_missing` + :func:`report_missing` - commands that are asked for cells (``embed``,
  ``query``) print ``N of M ... not processed`` and where the list is, and exit 3 unless
  ``--allow-missing``;
* :func:`note` - a fallback or default that changes meaning, said once on stderr with the option
  that changes it.

Standard library only: command modules import it at their top.
"""

from __future__ import annotations

import argparse
import sys

from ssl_cyto.cli.exit import EXIT_INCOMPLETE, EXIT_OK
from ssl_cyto.formats.outputs import check_output_dir, check_output_file  # standard library only

__all__ = ["add_allow_missing", "check_output_dir", "check_output_file", "note", "report_missing"]


def add_allow_missing(parser: argparse.ArgumentParser, what: str = "cells") -> None:
    """The ``--allow-missing`` option: exit 0 instead of 3 when some requested ``what`` are not processed."""
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help=f"exit 0 even when some requested {what} could not be processed (default: exit 3)",
    )


def report_missing(
    missing: int, total: int | None, what: str, listed: str | None, allow: bool, done: str = "processed"
) -> int:
    """Say on stderr how many requested items were not processed and where they are listed.

    Args:
        missing: items asked for and not processed.
        total: items asked for (None when unknown).
        what: what is counted (``cells``, ``query images``).
        listed: where the list is (a file, or "above").
        allow: ``--allow-missing`` was given.
        done: the verb of the summary (``embedded``).

    Returns:
        ``EXIT_OK`` when nothing is missing or ``allow``, else ``EXIT_INCOMPLETE`` (3).
    """
    if missing <= 0:
        return EXIT_OK
    of = f" of {total}" if total is not None else ""
    where = f" (listed in {listed})" if listed and listed != "above" else " (listed above)" if listed else ""
    tail = "" if allow else "; exit status 3 (pass --allow-missing to accept)"
    print(f"warning: {missing}{of} {what} not {done}{where}{tail}", file=sys.stderr)
    return EXIT_OK if allow else EXIT_INCOMPLETE


def note(message: str) -> None:
    """Print a fallback or default that changes meaning, once, on stderr (``note: ...``)."""
    print(f"note: {message}", file=sys.stderr)
