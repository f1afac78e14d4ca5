"""Helpers for the real-process preemption and launch tests: a fake SLURM allocation (a stub ``scontrol`` on
PATH that appends its arguments to a log), the tiny fit command, process-group bookkeeping, and a callback
that dumps each rank's parameters (importable by class path from a subprocess: ``PYTHONPATH`` = repo)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.preemption import AtomicCheckpointIO, checkpoint_step, env_global_rank

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "4242"
PREEMPTED = re.compile(r"(SIG\w+) received(?: after step (\d+))?; saved step (\d+) to (\S+)")


class DumpParams(pl.Callback):
    """Writes ``<out_dir>/params_rank<R>.pt`` (global step and the module's parameters) at the end of fit.

    Parameters only: BatchNorm running statistics are per-rank buffers under DDP (updated by each rank's
    last forward pass) and differ by design."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = {k: v.detach().cpu().clone() for k, v in pl_module.named_parameters()}
        out = Path(self.out_dir) / f"params_rank{trainer.global_rank}.pt"
        torch.save({"global_step": trainer.global_step, "params": params}, out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The test environment without any launcher variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "PL_", "TORCHELASTIC_"))
        and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")
        and k not in ("MASTER_ADDR", "MASTER_PORT")
    }
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    return env


def slurm_env(tmp: Path, rank: int = 0, world: int = 1, port: int | None = None) -> dict[str, str]:
    """A fake ``srun`` task environment (one task per "node") with a stub ``scontrol`` first on PATH."""
    bin_dir = tmp / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        stub = bin_dir / "scontrol"
        stub.write_text(f'#!/bin/sh\necho "$@" >> "{tmp / "scontrol.log"}"\nexit 0\n')
        stub.chmod(0o755)
    env = clean_env()
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        SLURM_JOB_ID=JOB_ID,
        SLURM_JOB_NAME="pretrain",  # not "bash"/"interactive", which Lightning treats as interactive
        SLURM_NTASKS=str(world),
        SLURM_NTASKS_PER_NODE="1",
        SLURM_NNODES=str(world),
        SLURM_NODEID=str(rank),
        SLURM_PROCID=str(rank),
        SLURM_LOCALID="0",
        SLURM_NODELIST="localhost",
    )
    if port is not None:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def fit_cmd(root: Path, data: Path, *extra: str, workers: int = 2, nodes: int = 1) -> list[str]:
    """``ssl-cyto fit`` on the tiny CNN (width 8, 32 px, batch 8), training "forever" unless overridden."""
    return [
        sys.executable,
        "-m",
        "ssl_cyto",
        "fit",
        "--config",
        str(CONFIG_DIR / "smoke_simclr.yaml"),
        f"--trainer.default_root_dir={root}",
        "--trainer.max_steps=100000",
        "--trainer.max_epochs=-1",
        f"--trainer.num_nodes={nodes}",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--run.logger=none",
        f"--data.data={data}",
        "--data.batch_size=8",
        f"--data.num_workers={workers}",
        f"--data.persistent_workers={'true' if workers else 'false'}",
        "--data.batches_per_epoch=40",
        "--data.val_size=16",
        "--model.init_args.backbone_kwargs={width: 8, depth: 2}",
        "--model.init_args.input_size=32",
        "--model.init_args.projection_hidden_dim=32",
        "--model.init_args.projection_dim=16",
        "--checkpoint.every_n_train_steps=3",
        *extra,
    ]


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for_step(last: Path, min_step: int, procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> int:
    """Wait until ``last`` holds a checkpoint of at least ``min_step``; returns its step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise AssertionError(f"exited early ({proc.returncode}): {log.read_text()[-3000:]}")
        if last.exists():
            try:
                step = checkpoint_step(last)
            except ValueError:
                step = -1
            if step >= min_step:
                return step
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of step >= {min_step} in {last} after {timeout} s")


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.time() + timeout
    for proc in procs:
        proc.wait(timeout=max(1.0, deadline - time.time()))
    return [p.returncode for p in procs]


def preemption_line(text: str) -> dict[str, Any]:
    """The run's "SIGX received after step A; saved step B to PATH" line."""
    found = PREEMPTED.findall(text)
    assert len(found) == 1, f"expected one preemption line, got {found}:\n{text[-3000:]}"
    name, after, saved, path = found[0]
    return {"signal": name, "after": int(after) if after else None, "saved": int(saved), "path": path}


def load(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return out


class FlakyCheckpointIO(AtomicCheckpointIO):
    """Checkpoint IO whose reads fail ``failures`` times on global rank ``fail_rank`` (a node whose file
    system has a hiccup); pass it as ``--trainer.plugins``."""

    def __init__(self, fail_rank: int = 1, failures: int = 1) -> None:
        super().__init__()
        self.fail_rank = fail_rank
        self.failures = failures

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if env_global_rank() == self.fail_rank and self.failures != 0:
            self.failures -= 1
            raise OSError(f"simulated read error of {path}")
        return super().load_checkpoint(path, *args, **kwargs)


class RecordLR(pl.Callback):
    """Appends ``[global step of the batch, learning rate]`` of every training batch to ``out_file`` (JSON lines)."""

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        with open(self.out_file, "a") as f:
            f.write(json.dumps([int(trainer.global_step) - 1, float(lr)]) + "\n")


class StopAt(pl.Callback):
    """Stops the fit after ``step`` optimiser steps (a run cut short with its schedule unchanged)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
