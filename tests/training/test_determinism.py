"""Two real ranks (gloo, torchrun-style environment, rank 1 started 2 s late) with
``augment_on_device: true``, a ViT with drop-path and ``trainer.max_time`` set: the augmentation
parameters and the drop-path masks differ between ranks, and the parameters of both ranks are
bitwise identical after 20 steps (the step budget, not each rank's clock, drives the schedules)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssl_cyto.tasks.registry import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
VIT = "{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, drop_path_rate: 0.5}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _args(root: Path, data: Path) -> list[str]:
    return [
        "--config",
        str(CONFIG_DIR / "smoke_simclr.yaml"),
        f"--trainer.default_root_dir={root}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.num_nodes=2",
        "--trainer.strategy=ddp",
        "--trainer.max_epochs=-1",
        "--trainer.max_time=00:00:01:00",
        "--trainer.enable_progress_bar=false",
        f"--data.data={data}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.batches_per_epoch=8",
        "--data.val_size=0",
        "--model.init_args.backbone=vit_tiny_patch16_224",
        f"--model.init_args.backbone_kwargs={VIT}",
        "--model.init_args.input_size=32",
        "--model.init_args.augment_on_device=true",
        "--model.init_args.projection_hidden_dim=32",
        "--model.init_args.projection_dim=16",
        "--model.init_args.warmup_steps=2",
        "--checkpoint.every_n_train_steps=0",
        "--run.logger=none",
    ]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_draw_differently_and_stay_identical(synth_folder: Path, tmp_path: Path) -> None:
    port = _free_port()
    procs = []
    try:
        for rank in range(2):
            env = dict(
                os.environ,
                OMP_NUM_THREADS="1",
                PYTHONPATH=str(REPO),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                NODE_RANK=str(rank),
                LOCAL_RANK="0",
                WORLD_SIZE="2",
            )
            for var in [k for k in env if k.startswith("SLURM_")]:
                env.pop(var)
            cmd = [sys.executable, "-m", "tests.training.fit_runner", str(tmp_path / "r"), "20", "0", "--"]
            procs.append(
                subprocess.Popen(
                    [*cmd, *_args(tmp_path / "run", synth_folder)],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            if rank == 0:
                time.sleep(2.0)  # rank 1 starts 2 s late: its clock lags rank 0's
        for proc in procs:
            _, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    rows = [
        [json.loads(line) for line in Path(f"{tmp_path / 'r'}.rank{r}.jsonl").read_text().splitlines()]
        for r in range(2)
    ]
    assert [len(r) for r in rows] == [20, 20]
    aug = [[row["aug"] for row in r] for r in rows]
    assert None not in aug[0] and all(a != b for a, b in zip(aug[0], aug[1], strict=True))
    drops = [[row["drops"] for row in r] for r in rows]
    assert any(any(any(m) for m in step) for step in drops[0])  # some samples were dropped
    assert drops[0] != drops[1]
    ends = [torch.load(f"{tmp_path / 'r'}.rank{r}.pt") for r in range(2)]
    assert ends[0]["budget"] is not None and ends[0]["budget"] == ends[1]["budget"]
    for k, v in ends[0]["params"].items():
        assert torch.equal(v, ends[1]["params"][k]), f"{k} differs between ranks"
