"""Outputs checked before the work: ``cannot create ...`` at once, not after minutes of computing.

Every command (through :mod:`ssl_cyto.cli.checks`) and every library function that writes a folder
calls these first. They create nothing: they write and remove one temporary file in the nearest
folder that exists, so a check leaves no empty folder behind. Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import overload

from ssl_cyto.formats.errors import OutputError

__all__ = ["check_output_dir", "check_output_file"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_dir(folder: Path, target: Path, option: str) -> None:
    """Create and remove a temporary file in ``folder``; OutputError naming ``target`` if that fails."""
    if not folder.is_dir():
        raise OutputError(
            f"cannot create {target} ({option}): {folder} is a file, not a folder; choose another {option}"
        )
    try:
        fd, name = tempfile.mkstemp(prefix=".ssl-cyto-write-check-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"cannot create {target} ({option}): {folder} is not writable ({reason}); choose a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(name)


@overload
def check_output_file(path: None, option: str = ...) -> None: ...
@overload
def check_output_file(path: str | os.PathLike, option: str = ...) -> Path: ...
def check_output_file(path: str | os.PathLike | None, option: str = "--out") -> Path | None:
    """Check, before any work, that the file ``path`` can be written (its folders may not exist yet).

    Args:
        path: the output file (None: nothing to check).
        option: the option that named it, for the message.

    Returns:
        ``path`` as a Path (None for None).

    Raises:
        OutputError: ``path`` is a folder, or it (or its folders) cannot be created.
    """
    if path is None:
        return None
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputError(f"cannot create {target} ({option}): it is a folder; give a file name such as {target / 'out.png'}")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise OutputError(
                f"cannot overwrite {target} ({option}): not writable; choose another {option}"
            )
        return target
    _probe_dir(_nearest_existing(target.parent.absolute()), target, option)
    return target


@overload
def check_output_dir(path: None, option: str = ...) -> None: ...
@overload
def check_output_dir(path: str | os.PathLike, option: str = ...) -> Path: ...
def check_output_dir(path: str | os.PathLike | None, option: str = "--out") -> Path | None:
    """Check, before any work, that the folder ``path`` exists and is writable or can be created.

    No folder is created: the check writes (and removes) one temporary file in the nearest folder
    that exists.

    Returns:
        ``path`` as a Path (None for None).

    Raises:
        OutputError: ``path`` is a file, or it cannot be created or written.
    """
    if path is None:
        return None
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot create {target} ({option}): it is a file, not a folder; choose another {option}")
    _probe_dir(_nearest_existing(target.absolute()), target, option)
    return target
