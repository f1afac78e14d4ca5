"""``scripts/slurm/pretrain.sbatch`` run with a stub ``srun``: the loader workers follow the CPUs per task,
and the requeue directives are there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "pretrain.sbatch"


def _run(tmp_path: Path, **env: str) -> list[str]:
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "activate").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "srun_args"
    (bin_dir / "srun").write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > "{out}"\n')
    (bin_dir / "srun").chmod(0o755)
    full = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "REPO": str(repo),
        "RUN_DIR": str(tmp_path / "run"),
        "SLURM_JOB_ID": "7",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "4",
        **env,
    }
    subprocess.run(["bash", str(SCRIPT), "--trainer.max_steps=5"], env=full, check=True, timeout=60)
    return out.read_text().splitlines()


def test_workers_follow_cpus_per_task(tmp_path: Path) -> None:
    args = _run(tmp_path, SLURM_CPUS_PER_TASK="12")
    assert "--data.num_workers=10" in args
    assert "--cpus-per-task=12" in args[: args.index("ssl-cyto")]  # srun itself gets the CPUs (Slurm 22.05+)
    assert args[-1] == "--trainer.max_steps=5"  # extra arguments last, so they win
    assert "--trainer.num_nodes=2" in args and "--trainer.devices=4" in args


def test_workers_override_and_directives(tmp_path: Path) -> None:
    assert "--data.num_workers=3" in _run(tmp_path, SLURM_CPUS_PER_TASK="12", NUM_WORKERS="3")
    text = SCRIPT.read_text()
    for directive in ("#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --cpus-per-task=12"):
        assert directive in text
