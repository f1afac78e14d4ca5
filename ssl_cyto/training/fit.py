"""``ssl-cyto fit``: pretrain an SSL method with a ``LightningCLI``.

Usage::

    ssl-cyto fit --config configs/smoke_simclr.yaml
    ssl-cyto fit --config configs/dino_vits16.yaml --trainer.max_steps=1000 --data.batch_size=64
    ssl-cyto fit --config configs/smoke_simclr.yaml --print_config      # resolved config, no training

The model is any :class:`ssl_cyto.tasks.SSLTask` subclass given by ``model.class_path`` (the methods
of :mod:`ssl_cyto.tasks.registry`) and the data is :class:`ssl_cyto.data.datamodule.CellDataModule`.
On top of LightningCLI this entry point adds (all overridable from YAML or the command line):

* ``checkpoint:`` a :class:`~ssl_cyto.training.callbacks.LastCheckpoint` writing
  ``<trainer.default_root_dir>/checkpoints/last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and
  at every epoch end (or in ``checkpoint.dirpath``). Rerunning the same command resumes automatically
  from the checkpoint with the highest global step that loads, chosen once by rank 0 and loaded by every
  rank or none (:mod:`ssl_cyto.training.resume`; model, optimiser, schedulers, DINO teacher and centre,
  global step, callback states); ``--run.resume=false`` starts afresh, ``--ckpt_path=X`` resumes from X;
  ``--run.allow_reshape=true`` accepts another world size, worker count or batch size (schedules and
  stop point kept in samples: :mod:`ssl_cyto.tasks.schedule`). Every
  checkpoint is written atomically and flushed to the disk; the one before ``last.ckpt`` is kept.
* ``preemption:`` :class:`~ssl_cyto.training.callbacks.preemption.Preemption`: on SIGUSR1 (SLURM's
  ``--signal=SIGUSR1@90``) or SIGTERM every rank stops at the next step boundary after one ``last.ckpt``,
  rank 0 calls ``scontrol requeue $SLURM_JOB_ID`` once under SLURM, and the run exits (the CLI: 130).
  Lightning's own requeue is off (``SLURMEnvironment(auto_requeue=False)``).
* ``budget:`` :class:`~ssl_cyto.training.callbacks.step_budget.StepBudget`: under ``trainer.max_time``, a
  step budget decided once, agreed by every rank and stored in the checkpoint.
* ``progress:`` :class:`~ssl_cyto.training.callbacks.ProgressLines`: when the output is not a terminal,
  one line every ``progress.every_s`` seconds (step / total, loss, images/s, ETA, latest kNN); a terminal
  keeps Lightning's bar. Lightning's tips and irrelevant warnings are silenced in
  :mod:`ssl_cyto.training.console`.
* ``knn:`` :class:`~ssl_cyto.training.callbacks.OnlineKNN`, ``guard:``
  :class:`~ssl_cyto.training.callbacks.CollapseGuard`, ``throughput:``
  :class:`~ssl_cyto.training.callbacks.Throughput`.
* ``run.logger``: ``csv`` (default), ``wandb``, ``both`` or ``none`` (or set ``trainer.logger`` to a
  ``class_path`` yourself); see :mod:`ssl_cyto.training.loggers`.
* Launch: SLURM (``srun``), torchrun (``TorchElasticEnvironment``) or one process per device started by
  Lightning; see docs/training.md.

Python: :func:`run_fit` takes the same arguments and returns the path of the final ``last.ckpt``; the
command line (:mod:`ssl_cyto.cli.fit`) calls it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import yaml
from jsonargparse import ArgumentError
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from ssl_cyto.data.datamodule import CellDataModule
from ssl_cyto.formats.errors import InputError
from ssl_cyto.formats.provenance import git_commit, package_versions
from ssl_cyto.models import hub
from ssl_cyto.tasks.base import SSLTask
from ssl_cyto.training.callbacks import (
    CollapseGuard,
    LastCheckpoint,
    OnlineKNN,
    ProgressLines,
    RunMetadata,
    Throughput,
    TrainingStopped,
    guards,
)
from ssl_cyto.training.callbacks.preemption import Preemption
from ssl_cyto.training.callbacks.step_budget import StepBudget
from ssl_cyto.training.console import bar_wanted, quiet_lightning
from ssl_cyto.training.loggers import (
    LOGGER_CHOICES,
    finish_wandb,
    make_loggers,
    wandb_logged_in,
    wandb_mode,
    wandb_run_id,
)
from ssl_cyto.training.preemption import CHECKPOINT_DIR, Preempted, cluster_plugins, find_resume_checkpoint
from ssl_cyto.training.resume import AgreedResume, checkpoint_dirs

__all__ = [
    "CHECKPOINT_DIR",
    "LOGGER_CHOICES",
    "FitError",
    "FitOutcome",
    "SSLCytoCLI",
    "build_cli",
    "config_hash",
    "final_checkpoint",
    "find_resume_checkpoint",
    "fit_outcome",
    "run_fit",
    "wandb_logged_in",
    "wandb_mode",
    "wandb_run_id",
]


class FitError(InputError):
    """A fit configuration that cannot run (the message names the key and the fix)."""


@dataclass
class FitOutcome:
    """How a fit ended.

    Attributes:
        checkpoint: the last checkpoint written (``""`` after ``fast_dev_run``).
        preempted: the preemption that stopped the run early (``None`` when it ran to its end).
    """

    checkpoint: str
    preempted: Preempted | None = None


def config_hash(config: Any) -> str:
    """SHA-256 (first 16 hex digits) of a config dumped as sorted JSON."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LogConfig(SaveConfigCallback):
    """Writes config.yaml beside the logs (overwriting on resume) and logs the config to every logger."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        cfg = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": cfg})


class SSLCytoCLI(LightningCLI):
    """LightningCLI with ssl_cyto's checkpointing, resume, loggers and monitoring callbacks.

    Args:
        *args: passed to :class:`~pytorch_lightning.cli.LightningCLI`.
        extra_callbacks: callbacks appended to the trainer's (Python use: tests, the demo).
        **kwargs: passed to :class:`~pytorch_lightning.cli.LightningCLI`.
    """

    def __init__(self, *args: Any, extra_callbacks: Sequence[pl.Callback] = (), **kwargs: Any) -> None:
        self.extra_callbacks = list(extra_callbacks)
        self.resumed_from: str | None = None
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--run.logger",
            type=Literal["csv", "wandb", "both", "none"],
            default="csv",
            help="loggers when trainer.logger is not set: csv, wandb, both or none",
        )
        parser.add_argument("--run.project", type=str, default="ssl-cyto", help="wandb project")
        parser.add_argument("--run.entity", type=str | None, default=None, help="wandb entity (team)")
        parser.add_argument(
            "--run.name",
            type=str | None,
            default=None,
            help="run name (default: <method>-<root dir name>)",
        )
        parser.add_argument(
            "--run.resume",
            type=bool,
            default=True,
            help="resume from the checkpoint with the highest global step (checkpoint.dirpath, <default_root_dir>/checkpoints)",
        )
        parser.add_argument(
            "--run.allow_reshape",
            type=bool,
            default=False,
            help="resume a checkpoint written with another world size, worker count or batch size "
            "(the data position, schedules and max_steps continue in samples)",
        )
        parser.add_lightning_class_args(LastCheckpoint, "checkpoint")
        parser.add_lightning_class_args(Preemption, "preemption")
        parser.add_lightning_class_args(StepBudget, "budget")
        parser.add_lightning_class_args(OnlineKNN, "knn")
        parser.add_lightning_class_args(CollapseGuard, "guard")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(ProgressLines, "progress")

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse; a bad key or value is one line naming it (not the whole usage) and a FitError."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as exc:
            raise FitError(f"fit: {_one_line(str(exc))} (every key: ssl-cyto fit --help-full)") from exc

    # ---- configuration -------------------------------------------------------------------------------
    def _sub(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._sub()
        model_cls = str(cfg.model.class_path)
        self.method = model_cls.rsplit(".", 1)[-1].lower()
        if not cfg.trainer.default_root_dir:
            cfg.trainer.default_root_dir = os.path.join("runs", self.method)
        self.root_dir = str(cfg.trainer.default_root_dir)
        dumped = yaml.safe_load(self._parser(self.subcommand).dump(cfg, skip_none=False))
        self.run_meta = {
            "task_class": model_cls,
            "method": self.method,
            "config_hash": config_hash(dumped),
            "seed": cfg.get("seed_everything"),
            "git_commit": git_commit(),
            "package_versions": package_versions(),
            "config": dumped,
        }
        self.trainer_defaults = dict(self.trainer_defaults)
        self.trainer_defaults["callbacks"] = [RunMetadata(self.run_meta), *self.extra_callbacks]
        # a resumed run rebuilds a backbone of released weights from its checkpoint's record: no hub
        resume = cfg.get("ckpt_path") or (find_resume_checkpoint(self.root_dir) if cfg.run.resume else None)
        record = hub.record_of_checkpoint(resume)
        if record and hasattr(cfg.model.init_args, "backbone_source"):
            cfg.model.init_args.backbone_source = record
        elif hub.is_released(str(getattr(cfg.model.init_args, "backbone", ""))):
            hub.resolve(cfg.model.init_args.backbone)  # fetched now, or one line (exit 2) before any work

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        cfg = self._get(self.config_init, "trainer")
        if cfg.get("logger") in (None, True):
            run = self._sub().run
            name = run.name or f"{self.method}-{Path(self.root_dir).resolve().name}"
            kwargs["logger"] = make_loggers(run.logger, self.root_dir, name, run.project, run.entity)
        kwargs["plugins"] = cluster_plugins(cfg.get("plugins"))
        kwargs["enable_progress_bar"] = bar_wanted(cfg.get("enable_progress_bar"))
        return super().instantiate_trainer(**kwargs)

    # ---- the fit subcommand with automatic resume (Lightning looks `fit` up on the CLI by name) -----
    def fit(
        self, model: pl.LightningModule, datamodule: Any = None, ckpt_path: str | None = None, **kw: Any
    ) -> None:
        """``trainer.fit`` with the resume decided inside it, once, by rank 0 (:mod:`ssl_cyto.training.resume`)."""
        run = self._sub().run
        auto = bool(run.resume) and not getattr(self.trainer, "fast_dev_run", False)
        if ckpt_path is None and not auto:
            _refuse_stray_hpc_checkpoints(self.root_dir)
        connector = AgreedResume(self.trainer, auto=auto, allow_reshape=bool(run.allow_reshape))
        self.trainer._checkpoint_connector = connector
        try:
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kw)
        finally:
            self.resumed_from = connector.resumed_from
            finish_wandb(self.trainer)


def build_cli(argv: Sequence[str], callbacks: Sequence[pl.Callback] = (), run: bool = True) -> SSLCytoCLI:
    """Parse ``argv`` (without the ``fit`` word) and run (or just instantiate) the ``LightningCLI``.

    Args:
        argv: e.g. ``["--config", "configs/smoke_simclr.yaml", "--trainer.max_steps=50"]``.
        callbacks: extra callbacks appended to the trainer (Python use: tests, the demo).
        run: run the fit subcommand (False: parse and instantiate only).

    Returns:
        The CLI object (``.trainer``, ``.model``, ``.datamodule``, ``.root_dir``).
    """
    # We pass argv explicitly on purpose (ssl-cyto strips the `fit` word); sys.argv is left untouched
    # because Lightning's DDP launcher re-runs it for the other ranks.
    quiet_lightning()
    args = list(argv)
    if run:
        args = ["fit", *args]
    return SSLCytoCLI(
        model_class=SSLTask,
        datamodule_class=CellDataModule,
        subclass_mode_model=True,
        subclass_mode_data=False,
        save_config_callback=LogConfig,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,  # the tasks own their optimiser and per-step LR schedule
        trainer_defaults={"num_sanity_val_steps": 0},
        parser_kwargs={"prog": "ssl-cyto", "exit_on_error": False},
        args=args,
        run=run,
        extra_callbacks=callbacks,
    )


_NOISE = (
    "Subtypes:",
    "Errors:",
    "Given value",
    "- Expected a <class 'NoneType'>",
    "Does not validate against",
)


def _one_line(message: str) -> str:
    """jsonargparse's multi-line error as one line: the key, the most specific reason, the class."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()] or ["invalid arguments"]
    where = ""
    reason = ""
    for line in lines[1:]:
        if line.startswith("- Problem with given class_path"):
            where = " (" + line.removeprefix("- Problem with given ").rstrip(":") + ")"
        elif not reason and not line.startswith(_NOISE):
            reason = line.lstrip("- ")
    text = " ".join(x for x in (lines[0], reason) if x) + where
    return text if len(text) <= 300 else text[:297] + "..."


def _refuse_stray_hpc_checkpoints(root_dir: str) -> None:
    """Under SLURM, Lightning loads ``hpc_ckpt_*.ckpt`` by itself when no checkpoint is passed: refuse a
    fresh start beside such files (from an older release), which would not be fresh."""
    stray = sorted(glob.glob(os.path.join(root_dir, "hpc_ckpt_*.ckpt")))
    if stray and SLURMEnvironment.detect():
        raise FitError(
            f"{stray[0]} (and {len(stray) - 1} more) would be loaded by Lightning under SLURM, but it is "
            f"not resumable or --run.resume=false; move the hpc_ckpt_*.ckpt files out of {root_dir}"
        )


def final_checkpoint(trainer: pl.Trainer, root_dir: str) -> str:
    """The last checkpoint a finished run wrote (``""`` after ``fast_dev_run``).

    Raises:
        ssl_cyto.training.callbacks.TrainingStopped: the collapse / NaN guard stopped the run.
        FitError: no checkpoint was written.
    """
    for guard in guards(trainer):
        if guard.tripped:
            good = find_resume_checkpoint(root_dir, quiet=True, dirs=checkpoint_dirs(trainer))
            raise TrainingStopped(guard.reason + f"; last good checkpoint: {good}")
    if getattr(trainer, "fast_dev_run", False):
        return ""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, LastCheckpoint) and cb.last_model_path and os.path.isfile(cb.last_model_path):
            return str(cb.last_model_path)
    found = find_resume_checkpoint(root_dir, dirs=checkpoint_dirs(trainer))
    if found is None:
        raise FitError(f"training finished but no checkpoint was written under {root_dir}")
    return found


def fit_outcome(
    argv: Sequence[str] | SSLTask,
    data: Any = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_options: Any,
) -> FitOutcome:
    """Train as ``ssl-cyto fit ARGV`` would (or from objects: ``fit_outcome(task, data, **options)``,
    :func:`ssl_cyto.training.fit_objects.fit_task`) and say how it ended (finished, or preempted).

    Raises:
        ssl_cyto.training.callbacks.TrainingStopped: the collapse / NaN guard stopped the run.
        FitError: a bad configuration (one line naming the key), or no checkpoint was written.
    """
    if isinstance(argv, pl.LightningModule):
        from ssl_cyto.training.fit_objects import fit_task

        if data is None:
            raise FitError("fit(task, data): give the data (a CellDataModule or a data string)")
        return fit_task(argv, data, callbacks=callbacks, **trainer_options)  # type: ignore[arg-type]
    if data is not None or trainer_options:
        raise FitError("fit(argv): data and trainer options go into the argument list (or pass a task object)")
    if isinstance(argv, str):
        raise FitError("fit(argv): give a list of arguments, e.g. ['--config', 'smoke_simclr.yaml']")
    try:
        cli = build_cli(argv, callbacks=callbacks, run=True)
    except Preempted as stop:
        return FitOutcome(checkpoint=stop.path or "", preempted=stop)
    return FitOutcome(checkpoint=final_checkpoint(cli.trainer, cli.root_dir))


def run_fit(
    argv: Sequence[str] | SSLTask,
    data: Any = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_options: Any,
) -> str:
    """Train; returns the path of the final ``last.ckpt``. Two forms::

        run_fit(["--config", "smoke_simclr", "--trainer.max_steps=50"])      # as ssl-cyto fit ARGV
        run_fit(task, "shards/", default_root_dir="runs/a", max_steps=50)    # from Python objects

    The second takes an :class:`~ssl_cyto.tasks.base.SSLTask`, a
    :class:`~ssl_cyto.data.datamodule.CellDataModule` or data string, and ``pl.Trainer`` options, plus
    ``sections=``, ``run=``, ``seed=`` (:func:`ssl_cyto.training.fit_objects.fit_task`); both build the
    same callbacks, checkpoints and resume. Rerunning with the same ``default_root_dir`` resumes. With
    ``fast_dev_run`` no checkpoint is written and ``""`` is returned.

    Raises:
        ssl_cyto.training.callbacks.TrainingStopped: the collapse / NaN guard stopped the run.
        FitError: a bad configuration (one line naming the key), or no checkpoint was written.

    A preempted run (SIGUSR1 / SIGTERM) returns the checkpoint it saved; :func:`fit_outcome` tells
    the two apart.
    """
    return fit_outcome(argv, data, callbacks, **trainer_options).checkpoint
