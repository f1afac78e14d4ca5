"""Launch without SLURM, with real processes: ``torchrun`` with 2 processes (gloo, CPU) trains a few steps,
with a validation subset smaller than the world size (one rank's share of it is empty)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.fake_slurm import clean_env, fit_cmd, free_port, load


@pytest.mark.slow
def test_torchrun_two_processes_train(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    fit = fit_cmd(
        root,
        synth_folder,
        "--trainer.max_steps=3",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.accelerator=cpu",
        "--data.val_size=1",  # below the world size: rank 1 embeds no cell
        "--knn.k=1",
        workers=0,
    )
    assert fit[1:3] == ["-m", "ssl_cyto"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "--max_restarts=0",
        "-m",
        "ssl_cyto",
        *fit[3:],
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    assert "distributed_backend=gloo" in proc.stderr and "All distributed processes registered" in proc.stderr
    ckpt = load(root / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["callbacks"]["OnlineKNN"]["history"][0][0] == 0  # the kNN monitor ran on the gathered subset
