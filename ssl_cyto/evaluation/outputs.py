"""Output folders checked before the work: ``cannot create ...`` at once, not after minutes of computing.

:func:`check_output_dir` creates the folder (and missing parents), writes and removes a test file,
then removes again every folder it created: a command that later fails on its input leaves no empty
output folder behind, and one whose output cannot be written fails before it starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ssl_cyto.formats.errors import OutputError

__all__ = ["check_output_dir"]


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check that folder ``path`` can be created and written; leave the file system as it was.

    Args:
        path: the output folder.
        option: the option that names it, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``cannot create PATH (reason); give OPTION a writable folder``.
    """
    target = Path(path)
    missing: list[Path] = []
    probe = target
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        if not probe.is_dir():
            raise OutputError(
                f"cannot create {target}: {probe} is not a folder; give {option} a writable folder"
            )
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".ssl-cyto-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot create {target} ({reason}); give {option} a writable folder") from exc
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return target
