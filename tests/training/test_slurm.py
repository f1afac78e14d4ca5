"""Fake a SLURM allocation: SIGUSR1 makes Lightning write an HPC checkpoint and call `scontrol requeue`.

``ssl-cyto fit`` adds nothing for this: Lightning picks ``SLURMEnvironment(auto_requeue=True)`` because
``SLURM_NTASKS`` is set (as ``srun`` does). The test proves the whole chain on this machine with a stub
``scontrol`` on PATH that records its arguments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.fit import find_resume_checkpoint

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "4242"


def _slurm_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    stub = bin_dir / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit 0\n')
    stub.chmod(0o755)
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("SLURM_", "PL_", "RANK", "LOCAL_RANK", "WORLD_SIZE")):
            del env[key]
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
        SLURM_JOB_ID=JOB_ID,
        SLURM_JOB_NAME="pretrain",  # not "bash"/"interactive", which Lightning treats as interactive
        SLURM_NTASKS="1",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_NNODES="1",
        SLURM_NODEID="0",
        SLURM_PROCID="0",
        SLURM_LOCALID="0",
        SLURM_NODELIST="localhost",
    )
    return env


@pytest.mark.slow
def test_sigusr1_checkpoints_and_requeues(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ssl_cyto",
        "fit",
        "--config",
        str(CONFIG_DIR / "smoke_simclr.yaml"),
        f"--trainer.default_root_dir={root}",
        "--trainer.max_steps=100000",
        "--trainer.max_epochs=-1",
        "--trainer.num_nodes=1",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        f"--data.data={synth_folder}",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.batches_per_epoch=50",
        "--data.val_size=16",
        "--model.init_args.backbone_kwargs={width: 4, depth: 2}",
        "--model.init_args.input_size=32",
        "--checkpoint.every_n_train_steps=2",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=_slurm_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "scontrol.log"
    try:
        # Training is running (signal handlers are registered before the first step) once last.ckpt exists.
        deadline = time.time() + 240
        while not (root / "checkpoints" / "last.ckpt").exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.3)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 120
        while not (log.exists() and log.read_text().strip()):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "scontrol was not called"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert log.read_text().split() == ["requeue", JOB_ID]
    hpc = sorted(root.glob("hpc_ckpt_*.ckpt"))
    assert [p.name for p in hpc] == ["hpc_ckpt_1.ckpt"]
    import torch

    ckpt = torch.load(hpc[0], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] >= 2 and "optimizer_states" in ckpt
    # The requeued job (same command) resumes from the newest checkpoint: the HPC one, unless the
    # still-running job wrote a later last.ckpt before it was killed (SLURM kills it at once).
    chosen = find_resume_checkpoint(root)
    last = root / "checkpoints" / "last.ckpt"
    if last.stat().st_mtime > hpc[0].stat().st_mtime:
        assert chosen == str(last)
        assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= ckpt["global_step"]
    else:
        assert chosen == str(hpc[0])
