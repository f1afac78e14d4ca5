"""Preemption and resume: signals that only set a flag, atomic checkpoint files, the cluster plugins,
``scontrol requeue``, and the choice of the checkpoint a rerun resumes from.

Why the project does this itself rather than through Lightning's ``SLURMEnvironment(auto_requeue=True)``:
SLURM's ``--signal=SIGUSR1@90`` reaches every process of the job step, DataLoader workers included.
Lightning's handler saves and requeues *inside the signal handler*, so each forked worker (which
inherited it) saved its stale fork-time copy of the model over ``hpc_ckpt_N.ckpt`` and called
``scontrol requeue`` again, and under DDP the main process saved in the middle of a step, inside
collectives. Here:

* :class:`PreemptionFlag` is the handler for ``SIGUSR1`` and ``SIGTERM``: it records the signal and
  nothing else, and only in the process it was installed in (a forked loader worker, persistent or
  not, inherits it and ignores the signal).
* :class:`PreemptionSignals` takes the place of Lightning's signal connector (which always installs a
  ``SIGTERM`` handler that broadcasts inside the handler, right before the loader workers are forked)
  and installs the flag instead; the :class:`~ssl_cyto.training.callbacks.preemption.Preemption`
  callback reads the flag at step boundaries, where every rank agrees, saves once and requeues once.
* :func:`cluster_plugins` passes ``SLURMEnvironment(auto_requeue=False)`` under SLURM and
  :class:`AtomicCheckpointIO` (temporary file + ``os.replace``) for every checkpoint Lightning writes.
* :func:`find_resume_checkpoint` picks the loadable checkpoint with the highest ``global_step`` (read
  from each file, never the file time), saying which ones it skipped and why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning_fabric.plugins.io import CheckpointIO, TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector

from ssl_cyto.formats.errors import InputError
from ssl_cyto.training.stop_flag import DEFAULT_SIGNALS, PreemptionFlag

__all__ = [
    "CHECKPOINT_DIR",
    "DEFAULT_REQUEUE_SIGNALS",
    "DEFAULT_SIGNALS",
    "AtomicCheckpointIO",
    "Preempted",
    "PreemptionFlag",
    "PreemptionSignals",
    "ResumeError",
    "checkpoint_step",
    "cluster_plugins",
    "env_global_rank",
    "find_resume_checkpoint",
    "requeue_job",
    "slurm_job_id",
]

#: Folder of ``last.ckpt`` under ``trainer.default_root_dir``.
CHECKPOINT_DIR = "checkpoints"
#: Signals that requeue the SLURM job after the checkpoint (``--preemption.requeue_signals``): SIGUSR1
#: is what ``#SBATCH --signal=SIGUSR1@90`` sends before the time limit; a plain ``scancel`` (SIGTERM)
#: checkpoints and stops for good.
DEFAULT_REQUEUE_SIGNALS = ("SIGUSR1",)


class Preempted(SystemExit):  # noqa: N818 - an exit, like Lightning's SIGTERMException
    """Raised on every rank at the step boundary after a preemption signal, once the checkpoint is saved.

    Attributes:
        signal_name: ``"SIGUSR1"`` or ``"SIGTERM"`` (rank 0's signal, else this rank's).
        step: the global step of the saved checkpoint.
        path: the checkpoint written (``None`` when the collapse guard had stopped checkpointing, or the
            step's loss was not finite).
        requeued: ``scontrol requeue`` succeeded (rank 0 under SLURM).
        requeue: the signal is one that requeues (``--preemption.requeue_signals``) and a checkpoint
            was written: rerunning resumes. Otherwise the run stopped for good.
    """

    def __init__(
        self, signal_name: str, step: int, path: str | None, requeued: bool, requeue: bool = True
    ) -> None:
        super().__init__(0)
        self.signal_name = signal_name
        self.step = step
        self.path = path
        self.requeued = requeued
        self.requeue = requeue

    @property
    def exit_code(self) -> int:
        """``ssl-cyto fit``'s exit status: 130 for a requeue signal, else 128 + the signal number (143 for
        SIGTERM); 1 when no checkpoint could be written."""
        if self.path is None:
            return 1
        if self.requeue:
            return 130
        try:
            return 128 + int(getattr(signal, self.signal_name))
        except (AttributeError, TypeError):
            return 143


def env_global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when there is none)."""
    for key in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 0


def _say(message: str) -> None:
    if env_global_rank() == 0:
        print(f"ssl-cyto fit: {message}", file=sys.stderr, flush=True)


# ---- the flag (ssl_cyto.training.stop_flag) ---------------------------------------------------------
class PreemptionSignals(_SignalConnector):
    """Lightning's signal connector with the project's flag in place of Lightning's handlers.

    Lightning calls :meth:`register_signal_handlers` at the start of ``fit``, before the loader
    workers start, and :meth:`teardown` at its end (restoring every handler it found).

    Args:
        trainer: the trainer.
        flag: the handler to install.
        signals: signal names, e.g. ``("SIGUSR1", "SIGTERM")``.
    """

    def __init__(self, trainer: pl.Trainer, flag: PreemptionFlag, signals: Sequence[str]) -> None:
        super().__init__(trainer)
        self.flag = flag
        self.signals = tuple(signals)

    def register_signal_handlers(self) -> None:
        self.received_sigterm = False
        self._original_handlers = self._get_current_signal_handlers()
        self.flag.install(self.signals)


# ---- checkpoints ---------------------------------------------------------------------------------------
class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes a local checkpoint to a temporary file beside it, flushes it to the
    disk (``fsync``) and renames it into place (``os.replace``), so a job killed while saving (or a node
    that crashes just after) never leaves a truncated file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            fsync_file(tmp)
            os.replace(tmp, target)
            fsync_file(target.parent)
        finally:
            tmp.unlink(missing_ok=True)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file (or a folder's entries, after a rename) to the disk, so a crash cannot leave a renamed
    but truncated checkpoint."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cluster_plugins(plugins: Any) -> list[Any]:
    """The trainer's ``plugins`` plus the project's: ``SLURMEnvironment(auto_requeue=False)`` under SLURM
    (unless launched by torchrun, or a cluster environment is given) and :class:`AtomicCheckpointIO`
    (unless a ``CheckpointIO`` is given)."""
    given = [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    out = list(given)
    if (
        not any(isinstance(p, ClusterEnvironment) for p in given)
        and SLURMEnvironment.detect()
        and not TorchElasticEnvironment.detect()
    ):
        out.append(SLURMEnvironment(auto_requeue=False))
    if not any(isinstance(p, CheckpointIO) for p in given):
        out.append(AtomicCheckpointIO())
    return out


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The ``global_step`` stored in a resumable Lightning checkpoint (memory-mapped, not read whole).

    Raises:
        ValueError: the file does not load, or is not a resumable training checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        try:  # legacy (non-zip) files cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ValueError(f"does not load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "global_step" not in ckpt or "state_dict" not in ckpt:
        raise ValueError("not a Lightning training checkpoint (no global_step / state_dict)")
    if "optimizer_states" not in ckpt:
        raise ValueError("holds weights only (no optimiser state), so training cannot resume from it")
    return int(ckpt["global_step"])


def _candidates(root: Path, dirs: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    folders = [*(Path(d) for d in dirs), root / CHECKPOINT_DIR]
    files = [p for d in dict.fromkeys(folders) for p in sorted(d.glob("*.ckpt"))]
    files += sorted(root.glob("hpc_ckpt_*.ckpt"))
    return [p for p in dict.fromkeys(files) if p.is_file()]


class ResumeError(InputError):
    """Checkpoints exist but none can be resumed from (the message names them and the way out)."""


def find_resume_checkpoint(
    root_dir: str | os.PathLike[str],
    quiet: bool = False,
    dirs: Iterable[str | os.PathLike[str]] = (),
    strict: bool = False,
) -> str | None:
    """The checkpoint a rerun resumes from: of ``*.ckpt`` in ``dirs`` (the configured
    ``checkpoint.dirpath``) and ``<root_dir>/checkpoints``, and Lightning's ``hpc_ckpt_*.ckpt``, the one
    with the highest ``global_step`` that loads (``last.ckpt`` wins a tie, then the file found first).

    Files that do not load are skipped, and each skip is said on stderr (rank 0) unless ``quiet``.
    ``ssl-cyto fit`` calls this on rank 0 only and broadcasts the choice
    (:class:`~ssl_cyto.training.resume.AgreedResume`).

    Args:
        root_dir: the run's ``trainer.default_root_dir``.
        quiet: do not report skipped files.
        dirs: further checkpoint folders, searched first.
        strict: raise when checkpoints exist but none loads (instead of returning ``None``).

    Returns:
        A path, or ``None`` for a fresh run.

    Raises:
        ResumeError: (``strict``) checkpoint files exist and none of them loads.
    """
    best: tuple[int, bool, str] | None = None
    skipped: list[str] = []
    for path in _candidates(Path(root_dir), dirs):
        try:
            step = checkpoint_step(path)
        except ValueError as exc:
            skipped.append(f"{path} ({exc})")
            if not quiet:
                _say(f"not resuming from {path}: it {exc}")
            continue
        key = (step, path.name == "last.ckpt", str(path))
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None and skipped and strict:
        raise ResumeError(
            f"no checkpoint to resume from loads: {'; '.join(skipped)}; move them away to start afresh, "
            "or pass `ssl-cyto fit --ckpt_path=FILE` (or `ssl-cyto fit --run.resume=false`)"
        )
    return None if best is None else best[2]


# ---- SLURM ---------------------------------------------------------------------------------------------
def slurm_job_id() -> str | None:
    """``$SLURM_JOB_ID`` (``ARRAYJOB_TASK`` for an array task), or ``None`` outside SLURM."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{array_task}" if array_job and array_task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def requeue_job(job_id: str, timeout: float = 60.0) -> bool:
    """``scontrol requeue JOB_ID``; returns whether it succeeded (a failure is said on stderr)."""
    try:
        done = subprocess.run(
            ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _say(f"could not requeue SLURM job {job_id}: {exc}; resubmit the same script to resume")
        return False
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip()
        _say(
            f"scontrol requeue {job_id} failed ({done.returncode}: {err}); resubmit the same script to resume"
        )
        return False
    return True
