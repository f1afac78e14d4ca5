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
import os
import sys
import tempfile
from pathlib import Path

from ssl_cyto.cli.exit import EXIT_INCOMPLETE, EXIT_OK
from ssl_cyto.formats.errors import OutputError  # standard library only, as in cli.exit

__all__ = ["add_allow_missing", "check_output_dir", "check_output_file", "note", "report_missing"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_dir(folder: Path, target: Path, option: str) -> None:
    """Create and remove a temporary file in ``folder``; OutputError naming ``target`` if that fails."""
    if not folder.is_dir():
        raise OutputError(
            f"{option} {target}: cannot create it, {folder} is a file and not a folder; choose another {option}"
        )
    try:
        fd, name = tempfile.mkstemp(prefix=".ssl-cyto-write-check-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"{option} {target}: cannot create it ({folder} is not writable: {reason}); choose a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(name)


def check_output_file(path: str | os.PathLike | None, option: str = "--out") -> None:
    """Check, before any work, that the file ``path`` can be written (its folders may not exist yet).

    Args:
        path: the output file (None: nothing to check).
        option: the option that named it, for the message.

    Raises:
        OutputError: ``path`` is a folder, or it (or its folders) cannot be created.
    """
    if path is None:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputError(f"{option} {target}: is a folder; give a file name such as {target / 'out.png'}")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise OutputError(
                f"{option} {target}: cannot overwrite it (not writable); choose another {option}"
            )
        return
    _probe_dir(_nearest_existing(target.parent.absolute()), target, option)


def check_output_dir(path: str | os.PathLike | None, option: str = "--out") -> None:
    """Check, before any work, that the folder ``path`` exists and is writable or can be created.

    No folder is created: the check writes (and removes) one temporary file in the nearest folder
    that exists.

    Raises:
        OutputError: ``path`` is a file, or it cannot be created or written.
    """
    if path is None:
        return
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {target}: is a file, not a folder; choose another {option}")
    _probe_dir(_nearest_existing(target.absolute()), target, option)


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
