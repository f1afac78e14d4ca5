"""Training callbacks, one job per module; all are wired into ``ssl-cyto fit`` by default
(see :mod:`ssl_cyto.training.fit`) and tuned from YAML (``knn:``, ``guard:``, ``throughput:``,
``checkpoint:`` sections).

* :class:`Throughput` logs cells/s and images/s (all views) per device and in total, and GPU memory.
* :class:`OnlineKNN` logs the leave-one-out weighted kNN accuracy of the backbone's embeddings on the
  datamodule's small labelled validation subset, before training (step 0) and after every epoch.
* :class:`CollapseGuard` stops a run on a non-finite loss or on representation collapse; once
  tripped, no checkpoint is written any more, so ``last.ckpt`` stays the last good one.
* :class:`LastCheckpoint` writes ``<default_root_dir>/checkpoints/last.ckpt``.
* :class:`RunMetadata` stores the run's provenance in every checkpoint.
* :class:`Preemption` checkpoints once and stops every rank at the step boundary after SIGUSR1 / SIGTERM,
  and requeues the SLURM job.
* :class:`ProgressLines` prints a progress line every ``every_s`` seconds when the output is a file.
* :class:`StepBudget` turns ``trainer.max_time`` into a step budget every rank agrees on.

Class names and checkpoint state keys are those of the first release (``ssl_cyto.callbacks``).
"""

from ssl_cyto.models.knn import knn_loo_accuracy
from ssl_cyto.training.callbacks.collapse_guard import (
    CollapseGuard,
    TrainingStopped,
    effective_rank,
    embedding_stats,
    guards,
)
from ssl_cyto.training.callbacks.last_checkpoint import LastCheckpoint
from ssl_cyto.training.callbacks.online_knn import OnlineKNN
from ssl_cyto.training.callbacks.preemption import Preemption
from ssl_cyto.training.callbacks.progress_lines import ProgressLines
from ssl_cyto.training.callbacks.run_metadata import RunMetadata
from ssl_cyto.training.callbacks.step_budget import StepBudget
from ssl_cyto.training.callbacks.throughput import Throughput
from ssl_cyto.training.callbacks.validation import val_embeddings

__all__ = [
    "CollapseGuard",
    "LastCheckpoint",
    "OnlineKNN",
    "Preemption",
    "ProgressLines",
    "RunMetadata",
    "StepBudget",
    "Throughput",
    "TrainingStopped",
    "effective_rank",
    "embedding_stats",
    "guards",
    "knn_loo_accuracy",
    "val_embeddings",
]
