"""Training from Python objects: ``ssl_cyto.fit(task, data, **trainer_options)``.

The same run as ``ssl-cyto fit`` (the same callbacks, checkpoint files, agreed resume, preemption, step
budget, progress lines and loggers), built from a task object and a data module (or a ``data`` string)
instead of an argument list::

    import ssl_cyto
    task = ssl_cyto.SimCLR(backbone="tiny_cnn", input_size=64)
    ckpt = ssl_cyto.fit(task, "shards/", default_root_dir="runs/a", max_steps=200)

Callback settings that the command line takes as sections (``checkpoint:``, ``preemption:``,
``budget:``, ``knn:``, ``guard:``, ``throughput:``, ``progress:``) are given as dicts of the same keys
(``sections={"checkpoint": {"every_n_train_steps": 50}}``); ``run`` holds ``logger``, ``project``,
``entity``, ``name``, ``resume`` and ``allow_reshape``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from ssl_cyto.data.datamodule import CellDataModule
from ssl_cyto.formats.provenance import git_commit, package_versions
from ssl_cyto.tasks.base import SSLTask
from ssl_cyto.training.callbacks import (
    CollapseGuard,
    LastCheckpoint,
    OnlineKNN,
    ProgressLines,
    RunMetadata,
    StepBudget,
    Throughput,
)
from ssl_cyto.training.callbacks.preemption import Preemption
from ssl_cyto.training.console import bar_wanted, quiet_lightning
from ssl_cyto.training.loggers import finish_wandb, make_loggers
from ssl_cyto.training.preemption import cluster_plugins
from ssl_cyto.training.resume import AgreedResume

__all__ = ["SECTIONS", "fit_task", "run_metadata"]

#: Callback sections, as on the command line.
SECTIONS: dict[str, type[pl.Callback]] = {
    "checkpoint": LastCheckpoint,
    "preemption": Preemption,
    "budget": StepBudget,
    "knn": OnlineKNN,
    "guard": CollapseGuard,
    "throughput": Throughput,
    "progress": ProgressLines,
}
RUN_DEFAULTS: dict[str, Any] = {
    "logger": "csv",
    "project": "ssl-cyto",
    "entity": None,
    "name": None,
    "resume": True,
    "allow_reshape": False,
}


def run_metadata(
    task: SSLTask, dm: CellDataModule, trainer_options: dict[str, Any], seed: Any
) -> dict[str, Any]:
    """The provenance stored in every checkpoint (as ``ssl-cyto fit`` writes it)."""
    from ssl_cyto.training.fit import config_hash

    cls = f"{type(task).__module__}.{type(task).__qualname__}"
    config = {
        "model": {"class_path": cls, "init_args": dict(task.hparams)},
        "data": dict(dm.hparams),
        "trainer": {
            k: v for k, v in trainer_options.items() if isinstance(v, str | int | float | bool | None)
        },
        "seed_everything": seed,
    }
    return {
        "task_class": cls,
        "method": type(task).__name__.lower(),
        "config_hash": config_hash(config),
        "seed": seed,
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "config": config,
    }


def fit_task(
    task: SSLTask,
    data: CellDataModule | str | os.PathLike[str],
    callbacks: Sequence[pl.Callback] = (),
    sections: dict[str, dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
    seed: int | None = 0,
    ckpt_path: str | None = None,
    **trainer_options: Any,
) -> Any:
    """Train ``task`` on ``data`` as ``ssl-cyto fit`` would; returns a :class:`~ssl_cyto.training.fit.FitOutcome`.

    Args:
        task: the method (an :class:`~ssl_cyto.tasks.base.SSLTask`).
        data: a :class:`~ssl_cyto.data.datamodule.CellDataModule`, or its ``data`` string.
        callbacks: extra callbacks.
        sections: callback settings by section name (:data:`SECTIONS`).
        run: ``logger``, ``project``, ``entity``, ``name``, ``resume``, ``allow_reshape``.
        seed: ``seed_everything`` (None: not seeded).
        ckpt_path: resume from this checkpoint (default: the agreed automatic resume).
        **trainer_options: ``pl.Trainer`` arguments (``default_root_dir``, ``max_steps``, ``max_time``...).
    """
    from ssl_cyto.training.fit import FitError, FitOutcome, final_checkpoint
    from ssl_cyto.training.preemption import Preempted

    if not isinstance(task, SSLTask):
        raise FitError(f"fit: {type(task).__name__} is not an SSLTask")
    sections = dict(sections or {})
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise FitError(f"fit: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    opts = {**RUN_DEFAULTS, **(run or {})}
    dm = data if isinstance(data, CellDataModule) else CellDataModule(str(data))
    if seed is not None:
        pl.seed_everything(seed)
    method = type(task).__name__.lower()
    root = str(trainer_options.pop("default_root_dir", None) or os.path.join("runs", method))
    quiet_lightning()
    meta = run_metadata(task, dm, trainer_options, seed)
    own = [cls(**sections.get(name, {})) for name, cls in SECTIONS.items()]
    logger = trainer_options.pop("logger", None)
    if logger in (None, True):
        name = opts["name"] or f"{method}-{Path(root).resolve().name}"
        logger = make_loggers(opts["logger"], root, name, opts["project"], opts["entity"])
    trainer_options.setdefault("num_sanity_val_steps", 0)
    trainer = pl.Trainer(
        default_root_dir=root,
        callbacks=[RunMetadata(meta), *own, *callbacks],
        plugins=cluster_plugins(trainer_options.pop("plugins", None)),
        enable_progress_bar=bar_wanted(trainer_options.pop("enable_progress_bar", None)),
        logger=logger,
        **trainer_options,
    )
    auto = bool(opts["resume"]) and not getattr(trainer, "fast_dev_run", False)
    trainer._checkpoint_connector = AgreedResume(
        trainer, auto=auto, allow_reshape=bool(opts["allow_reshape"])
    )
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    except Preempted as stop:
        return FitOutcome(checkpoint=stop.path or "", preempted=stop)
    finally:
        finish_wandb(trainer)
    return FitOutcome(checkpoint=final_checkpoint(trainer, root))
