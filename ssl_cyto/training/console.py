"""What a training run prints: Lightning's tips and the warnings that do not concern the user are
silenced here, in one place (:func:`quiet_lightning`), and the progress bar is kept for terminals only
(:func:`bar_wanted`; a log file gets :class:`~ssl_cyto.training.callbacks.ProgressLines` instead)."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from ssl_cyto.formats.progress import is_terminal

__all__ = ["QUIET_INFO", "QUIET_WARNINGS", "bar_wanted", "quiet_lightning"]

#: Lightning warnings that are noise here (regular expressions matched at the start of the message).
QUIET_WARNINGS = (
    "LightningCLI's args parameter is intended",  # argv is passed on purpose (see training/fit.py)
    # the labelled validation subset is read by the OnlineKNN / CollapseGuard callbacks, not a val loop
    "You passed in a `val_dataloader` but have no `validation_step`",
    r"You called `self.log\(",  # metrics logged with --run.logger=none
    "The number of training batches",  # smaller than log_every_n_steps: the CSV logger still writes
    "The '.*_dataloader' does not have many workers",  # the worker count is the user's (data.num_workers)
    "Checkpoint directory .* exists and is not empty",  # the run folder of a resumed run
    "Experiment logs directory .* exists and is not empty",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # the data module restores its stream position itself (CellDataModule.state_dict)
    "You're resuming from a checkpoint that ended before the epoch ended",
    # the tasks make their views on the device after the transfer, by design
    "You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a",
)
#: Lightning info lines that are noise here (substrings).
QUIET_INFO = ("💡 Tip:", "LitLogger", "litmodels")


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(s in text for s in QUIET_INFO)


def quiet_lightning() -> None:
    """Silence Lightning's tips and the warnings of :data:`QUIET_WARNINGS` (idempotent)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropInfo) for f in logger.filters):
            logger.addFilter(_DropInfo())


def bar_wanted(given: Any) -> bool:
    """Lightning's progress bar: as configured when set, else only when stdout is a terminal."""
    return bool(given) if given is not None else is_terminal(sys.stdout)
