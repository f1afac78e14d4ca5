"""``ssl-cyto fit``: pretraining, a LightningCLI that takes its raw arguments.

Its ``--help`` is LightningCLI's (it imports torch). A bad key or value exits 2 naming it (jsonargparse
prints the message); a run stopped by the collapse / NaN guard exits 1, keeping the last good
checkpoint; Ctrl-C exits 130, and rerunning the same command resumes from ``last.ckpt``.
"""

from __future__ import annotations

import os
import sys

from ssl_cyto.cli.exit import EXIT_BAD_INPUT, EXIT_OK

RESUME_HINT = "rerun the same command to resume from last.ckpt"
#: Exit status of a run the collapse / NaN guard stopped (the last good checkpoint is kept).
EXIT_STOPPED = 1


def run_raw(argv: list[str]) -> int:
    """``ssl-cyto fit ARGV``; returns the exit status (2 for a bad config, 1 when the guard stopped a run)."""
    from ssl_cyto.formats.errors import SslCytoError
    from ssl_cyto.training.callbacks import TrainingStopped
    from ssl_cyto.training.fit import run_fit

    try:
        path = run_fit(argv)
    except SystemExit as exc:  # jsonargparse already printed "error: ... key ..."
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_BAD_INPUT)
    except TrainingStopped as exc:
        print(f"ssl-cyto fit: stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, FileNotFoundError) as exc:
        # Lightning and torch raise plain ValueError / FileNotFoundError for config values that the
        # parser cannot check; ours (SslCytoError) go to the dispatcher's one-line report.
        if isinstance(exc, SslCytoError) or os.environ.get("SSL_CYTO_DEBUG"):
            raise
        print(f"ssl-cyto fit: error: {exc}\n(set SSL_CYTO_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if path:
        print(f"ssl-cyto fit: final checkpoint {path}")
    return EXIT_OK
