"""Provenance of a run, stored in every checkpoint."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class RunMetadata(pl.Callback):
    """Stores provenance in every checkpoint under ``checkpoint["ssl_cyto"]``.

    ``ssl-cyto export`` reads it back: the task class to rebuild, the method, the hash of the full training
    config, the seed, the git commit and package versions the run was trained with, and the config.

    Args:
        meta: JSON-serialisable dict (``task_class``, ``method``, ``config_hash``, ``seed``, ``git_commit``,
            ``package_versions``, ``config``).
    """

    def __init__(self, meta: dict[str, Any]) -> None:
        super().__init__()
        self.meta = dict(meta)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        info = dict(self.meta)
        info.setdefault("task_class", f"{type(pl_module).__module__}.{type(pl_module).__qualname__}")
        info["global_step"] = trainer.global_step
        checkpoint["ssl_cyto"] = info
