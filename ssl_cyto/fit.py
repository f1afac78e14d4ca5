"""``ssl-cyto fit``: pretrain SimCLR or DINO with a ``LightningCLI``.

Usage::

    ssl-cyto fit --config configs/smoke_simclr.yaml
    ssl-cyto fit --config configs/dino_vits16.yaml --trainer.max_steps=1000 --data.batch_size=64
    ssl-cyto fit --config configs/smoke_simclr.yaml --print_config      # resolved config, no training

The model is any :class:`ssl_cyto.tasks.SSLTask` subclass given by ``model.class_path`` and the data is
:class:`ssl_cyto.data.datamodule.CellDataModule`. On top of LightningCLI this entry point adds
(all overridable from YAML or the command line):

* ``checkpoint:`` a :class:`~ssl_cyto.callbacks.LastCheckpoint` writing
  ``<trainer.default_root_dir>/checkpoints/last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and
  at every epoch end. Rerunning the same command resumes automatically from the newest of ``last.ckpt``
  and Lightning's SLURM ``hpc_ckpt_*.ckpt`` (model, optimiser, schedulers, DINO teacher and centre,
  global step, callback states); ``--run.resume=false`` starts afresh, ``--ckpt_path=X`` resumes from X.
* ``knn:`` :class:`~ssl_cyto.callbacks.OnlineKNN`, ``guard:`` :class:`~ssl_cyto.callbacks.CollapseGuard`,
  ``throughput:`` :class:`~ssl_cyto.callbacks.Throughput`.
* ``run.logger``: ``csv`` (default), ``wandb``, ``both`` or ``none`` (or set ``trainer.logger`` to a
  ``class_path`` yourself). wandb runs online when you are logged in (``WANDB_API_KEY`` or a netrc entry
  for api.wandb.ai) and offline otherwise; ``WANDB_MODE`` overrides. The wandb run id is kept in
  ``<default_root_dir>/wandb_run_id`` so a resumed or requeued job continues the same wandb run.
* Under SLURM (``SLURM_NTASKS`` set by ``srun``) Lightning selects ``SLURMEnvironment(auto_requeue=True)``
  itself: on ``SIGUSR1`` (``#SBATCH --signal=SIGUSR1@90``) it writes ``hpc_ckpt_N.ckpt`` into
  ``default_root_dir`` and calls ``scontrol requeue $SLURM_JOB_ID``; the requeued job resumes from it.

Python: :func:`run_fit` takes the same arguments and returns the path of the final ``last.ckpt``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import netrc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytorch_lightning as pl

LOGGER_CHOICES = ("csv", "wandb", "both", "none")
WANDB_ID_FILE = "wandb_run_id"
CHECKPOINT_DIR = "checkpoints"


class FitError(ValueError):
    """A fit configuration that cannot run (the message names the key and the fix)."""


# --------------------------------------------------------------------------------------------------------
# helpers (standard library only, importable without torch)
# --------------------------------------------------------------------------------------------------------


def find_resume_checkpoint(root_dir: str | os.PathLike[str]) -> str | None:
    """The checkpoint a rerun resumes from: the newest of ``checkpoints/last.ckpt`` and ``hpc_ckpt_*.ckpt``.

    Args:
        root_dir: the run's ``trainer.default_root_dir``.

    Returns:
        A path, or ``None`` for a fresh run.
    """
    root = Path(root_dir)
    candidates = [root / CHECKPOINT_DIR / "last.ckpt", *map(Path, glob.glob(str(root / "hpc_ckpt_*.ckpt")))]
    existing = [p for p in candidates if p.is_file() and p.stat().st_size > 0]
    if not existing:
        return None
    return str(max(existing, key=lambda p: p.stat().st_mtime))


def wandb_logged_in() -> bool:
    """Whether wandb credentials are available without prompting (``WANDB_API_KEY`` or a netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return False
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` when logged in, else ``offline``."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


def _global_rank_from_env() -> int:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                continue
    return 0


def wandb_run_id(root_dir: str | os.PathLike[str]) -> str | None:
    """The wandb run id of this run folder: read from ``<root>/wandb_run_id``, created by rank 0 if absent."""
    path = Path(root_dir) / WANDB_ID_FILE
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    if _global_rank_from_env() != 0:
        return None
    import secrets

    run_id = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def config_hash(config: Any) -> str:
    """SHA-256 (first 16 hex digits) of a config dumped as sorted JSON."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# the LightningCLI subclass (built lazily so `ssl-cyto --help` stays instant)
# --------------------------------------------------------------------------------------------------------

_CLI_CLASS: Any = None


def _cli_class() -> Any:
    global _CLI_CLASS
    if _CLI_CLASS is not None:
        return _CLI_CLASS

    from typing import Literal

    import yaml
    from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

    from ssl_cyto.callbacks import CollapseGuard, LastCheckpoint, OnlineKNN, RunMetadata, Throughput
    from ssl_cyto.data.datamodule import CellDataModule
    from ssl_cyto.tasks import SSLTask

    class LogConfig(SaveConfigCallback):
        """Writes config.yaml beside the logs (overwriting on resume) and logs the config to every logger."""

        def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
            if not trainer.is_global_zero:
                return
            cfg = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            for logger in trainer.loggers:
                logger.log_hyperparams({"config": cfg})

    class SSLCytoCLI(LightningCLI):
        """LightningCLI with ssl_cyto's checkpointing, resume, loggers and monitoring callbacks."""

        extra_callbacks: list[pl.Callback] = []

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
                help="resume from <default_root_dir>/checkpoints/last.ckpt (or a newer hpc_ckpt) when present",
            )
            parser.add_lightning_class_args(LastCheckpoint, "checkpoint")
            parser.add_lightning_class_args(OnlineKNN, "knn")
            parser.add_lightning_class_args(CollapseGuard, "guard")
            parser.add_lightning_class_args(Throughput, "throughput")

        # ---- configuration ---------------------------------------------------------------------------
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
            from ssl_cyto.models.backbones import _git_commit, package_versions

            self.run_meta = {
                "task_class": model_cls,
                "method": self.method,
                "config_hash": config_hash(dumped),
                "seed": cfg.get("seed_everything"),
                "git_commit": _git_commit(),
                "package_versions": package_versions(),
                "config": dumped,
            }
            self.trainer_defaults = dict(self.trainer_defaults)
            self.trainer_defaults["callbacks"] = [RunMetadata(self.run_meta), *self.extra_callbacks]

        def _make_loggers(self, kind: str) -> list[Any] | bool:
            cfg = self._sub()
            loggers: list[Any] = []
            name = cfg.run.name or f"{self.method}-{Path(self.root_dir).resolve().name}"
            if kind in ("csv", "both"):
                from pytorch_lightning.loggers import CSVLogger

                loggers.append(CSVLogger(save_dir=self.root_dir, name="csv"))
            if kind in ("wandb", "both"):
                from pytorch_lightning.loggers import WandbLogger

                Path(self.root_dir).mkdir(parents=True, exist_ok=True)
                mode = wandb_mode()
                loggers.append(
                    WandbLogger(
                        name=name,
                        project=cfg.run.project,
                        entity=cfg.run.entity,
                        save_dir=self.root_dir,
                        id=wandb_run_id(self.root_dir),
                        resume="allow",
                        offline=mode == "offline",
                    )
                )
            return loggers or False

        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            cfg = self._get(self.config_init, "trainer")
            if cfg.get("logger") in (None, True):
                kwargs["logger"] = self._make_loggers(self._sub().run.logger)
            return super().instantiate_trainer(**kwargs)

        # ---- the fit subcommand with automatic resume ------------------------------------------------
        def fit(
            self, model: pl.LightningModule, datamodule: Any = None, ckpt_path: str | None = None, **kw: Any
        ) -> None:
            if (
                ckpt_path is None
                and self._sub().run.resume
                and not getattr(self.trainer, "fast_dev_run", False)
            ):
                ckpt_path = find_resume_checkpoint(self.root_dir)
                if ckpt_path and self.trainer.is_global_zero:
                    print(f"ssl-cyto fit: resuming from {ckpt_path}", file=sys.stderr, flush=True)
            self.resumed_from = ckpt_path
            try:
                self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kw)
            finally:
                _finish_wandb(self.trainer)

    # Lightning's `fit` is looked up on the CLI object by name: keep ours.
    _CLI_CLASS = SSLCytoCLI
    _CLI_CLASS._model_base = SSLTask  # type: ignore[attr-defined]
    _CLI_CLASS._data_class = CellDataModule  # type: ignore[attr-defined]
    _CLI_CLASS._save_config = LogConfig  # type: ignore[attr-defined]
    return _CLI_CLASS


def _finish_wandb(trainer: Any) -> None:
    """End the wandb run of this fit, so a later fit in the same Python process starts its own run."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        run: Any = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is not None:
            run.finish()
            logger._experiment = None  # type: ignore[union-attr]


def build_cli(argv: Sequence[str], callbacks: Sequence[pl.Callback] = (), run: bool = True) -> Any:
    """Parse ``argv`` (without the ``fit`` word) and run (or just instantiate) the ``LightningCLI``.

    Args:
        argv: e.g. ``["--config", "configs/smoke_simclr.yaml", "--trainer.max_steps=50"]``.
        callbacks: extra callbacks appended to the trainer (Python use: tests, the demo).
        run: run the fit subcommand (False: parse and instantiate only).

    Returns:
        The CLI object (``.trainer``, ``.model``, ``.datamodule``, ``.root_dir``).
    """
    import warnings

    cls = _cli_class()
    cls.extra_callbacks = list(callbacks)
    # We pass argv explicitly on purpose (ssl-cyto strips the `fit` word); sys.argv is left untouched
    # because Lightning's DDP launcher re-runs it for the other ranks.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    args = list(argv)
    if run:
        args = ["fit", *args]
    return cls(
        model_class=cls._model_base,
        datamodule_class=cls._data_class,
        subclass_mode_model=True,
        subclass_mode_data=False,
        save_config_callback=cls._save_config,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,  # the tasks own their optimiser and per-step LR schedule
        trainer_defaults={"num_sanity_val_steps": 0},
        parser_kwargs={"prog": "ssl-cyto"},
        args=args,
        run=run,
    )


def _final_checkpoint(cli: Any) -> str:
    from ssl_cyto.callbacks import LastCheckpoint, TrainingStopped, _guards

    trainer = cli.trainer
    for guard in _guards(trainer):
        if guard.tripped:
            raise TrainingStopped(
                guard.reason + (f"; last good checkpoint: {find_resume_checkpoint(cli.root_dir)}")
            )
    if getattr(trainer, "fast_dev_run", False):
        return ""
    for cb in trainer.callbacks:
        if isinstance(cb, LastCheckpoint) and cb.last_model_path and os.path.isfile(cb.last_model_path):
            return str(cb.last_model_path)
    found = find_resume_checkpoint(cli.root_dir)
    if found is None:
        raise FitError(f"training finished but no checkpoint was written under {cli.root_dir}")
    return found


def run_fit(argv: Sequence[str], callbacks: Sequence[pl.Callback] = ()) -> str:
    """Train as ``ssl-cyto fit ARGV`` would; returns the path of the final ``last.ckpt``.

    Rerunning with the same ``trainer.default_root_dir`` resumes. With ``--trainer.fast_dev_run=true`` no
    checkpoint is written and ``""`` is returned.

    Raises:
        ssl_cyto.callbacks.TrainingStopped: the collapse / NaN guard stopped the run.
        SystemExit: a bad configuration (the parser printed the key and the problem).
    """
    cli = build_cli(argv, callbacks=callbacks, run=True)
    return _final_checkpoint(cli)


def main(argv: list[str]) -> int:
    """``ssl-cyto fit ARGV``; returns the exit code (2 for a bad config, 1 when the guard stopped a run)."""
    from ssl_cyto.callbacks import TrainingStopped

    debug = bool(os.environ.get("SSL_CYTO_DEBUG"))
    try:
        cli = build_cli(argv, run=True)
        path = _final_checkpoint(cli)
    except SystemExit as exc:  # jsonargparse already printed "error: ... key ..."
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        return code
    except TrainingStopped as exc:
        print(f"ssl-cyto fit: stopped: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        if debug:
            raise
        print(f"ssl-cyto fit: error: {exc}\n(set SSL_CYTO_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    if path:
        print(f"ssl-cyto fit: final checkpoint {path}")
    return 0
