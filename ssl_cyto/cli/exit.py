"""Exit statuses, decided once for every command, and the guard that maps errors onto them.

=====  ===================================================================================
0      done
2      bad input or usage (an :class:`~ssl_cyto.formats.errors.SslCytoError`, or argparse)
3      finished, but some requested cells were not processed (see ``--allow-missing``)
130    interrupted (Ctrl-C / SIGINT); rerunning the same command resumes where a command can
=====  ===================================================================================
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from ssl_cyto.formats.errors import SslCytoError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


def guarded(fn: Callable[[], int | None], debug: bool = False, resume_hint: str | None = None) -> int:
    """Run ``fn``; an expected error becomes one line on stderr and exit 2, Ctrl-C exit 130.

    Args:
        fn: the command body; returns its exit status (None means 0).
        debug: print the traceback of an expected error too (``ssl-cyto --debug``).
        resume_hint: said after an interruption, e.g. "rerun the same command to resume".
    """
    try:
        return int(fn() or EXIT_OK)
    except SslCytoError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        hint = f"; {resume_hint}" if resume_hint else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
