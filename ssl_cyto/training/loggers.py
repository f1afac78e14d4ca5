"""Loggers of ``ssl-cyto fit``: CSV and/or wandb, and the wandb run id kept across resumes.

wandb runs online when you are logged in (``WANDB_API_KEY`` or a netrc entry for api.wandb.ai) and
offline otherwise; ``WANDB_MODE`` overrides. The wandb run id is kept in
``<default_root_dir>/wandb_run_id`` so a resumed or requeued job continues the same wandb run.
"""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, WandbLogger

LOGGER_CHOICES = ("csv", "wandb", "both", "none")
WANDB_ID_FILE = "wandb_run_id"


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
    run_id = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def make_loggers(kind: str, root_dir: str, name: str, project: str, entity: str | None) -> list[Any] | bool:
    """The loggers of ``run.logger`` (``csv``, ``wandb``, ``both`` or ``none``); ``False`` for none."""
    loggers: list[Any] = []
    if kind in ("csv", "both"):
        loggers.append(CSVLogger(save_dir=root_dir, name="csv"))
    if kind in ("wandb", "both"):
        Path(root_dir).mkdir(parents=True, exist_ok=True)
        loggers.append(
            WandbLogger(
                name=name,
                project=project,
                entity=entity,
                save_dir=root_dir,
                id=wandb_run_id(root_dir),
                resume="allow",
                offline=wandb_mode() == "offline",
            )
        )
    return loggers or False


def finish_wandb(trainer: Any) -> None:
    """End the wandb run of this fit, so a later fit in the same Python process starts its own run."""
    for logger in trainer.loggers:
        run: Any = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is not None:
            run.finish()
            logger._experiment = None  # type: ignore[union-attr]
