"""Kill a DINO run with SIGKILL after a checkpoint; the rerun restores everything exactly, then trains on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.fit import run_fit

REPO = Path(__file__).resolve().parents[2]
SMOKE_DINO = CONFIG_DIR / "smoke_dino.yaml"


def _args(root: Path, data: Path, max_steps: int) -> list[str]:
    return [
        "--config",
        str(SMOKE_DINO),
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={max_steps}",
        "--trainer.max_epochs=-1",
        "--trainer.enable_progress_bar=false",
        f"--data.data={data}",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.batches_per_epoch=3",  # epoch ends mid-run too
        "--data.val_size=16",
        "--model.init_args.backbone_kwargs={width: 4, depth: 2}",
        "--model.init_args.input_size=32",
        "--model.init_args.local_size=16",
        "--model.init_args.head_output_dim=64",
        "--model.init_args.head_hidden_dim=32",
        "--model.init_args.head_bottleneck_dim=16",
        "--checkpoint.every_n_train_steps=2",
    ]


def _wait_for_checkpoint(path: Path, min_step: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if path.exists():
            try:
                step = torch.load(path, map_location="cpu", weights_only=False)["global_step"]
            except Exception:  # being replaced right now
                step = -1
            if step >= min_step:
                return
        time.sleep(0.3)
    raise AssertionError(f"no checkpoint at step >= {min_step} after {timeout} s")


def _assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert torch.equal(a.cpu(), b.cpu()), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


class RestoreProbe(pl.Callback):
    """Compares the live state at ``on_train_start`` of the rerun with the checkpoint on disk."""

    def __init__(self, ckpt: dict[str, Any]) -> None:
        self.ckpt = ckpt
        self.checked: list[str] = []
        self.final_state: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ck = self.ckpt
        assert trainer.global_step == ck["global_step"]
        self.checked.append("global_step")
        live = pl_module.state_dict()
        _assert_same(ck["state_dict"], live, "state_dict")
        self.checked.append("state_dict")
        teacher = [k for k in live if k.startswith(("teacher_backbone.", "teacher_head."))]
        centre = [k for k in live if "center" in k]
        assert teacher and centre, "DINO teacher / centre not in the module state"
        # The teacher differs from the student after training (EMA), so restoring it is not trivial.
        assert not all(
            torch.equal(live[k], live[k.replace("teacher_backbone.", "backbone.")])
            for k in teacher
            if k.startswith("teacher_backbone.") and live[k].is_floating_point()
        )
        assert float(live[centre[0]].abs().sum()) > 0  # the centre moved away from its zero init
        self.checked += ["teacher", "centre"]
        opt_live = [o.state_dict() for o in trainer.optimizers]
        _assert_same(ck["optimizer_states"], opt_live, "optimizer")
        assert any(len(o["state"]) for o in opt_live)  # AdamW moments exist
        self.checked.append("optimizer")
        sched_live = [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs]
        _assert_same(ck.get("lr_schedulers", []), sched_live, "lr_schedulers")
        self.checked.append("schedulers")
        lr_live = [g["lr"] for o in trainer.optimizers for g in o.param_groups]
        lr_ckpt = [g["lr"] for o in ck["optimizer_states"] for g in o["param_groups"]]
        assert lr_live == lr_ckpt
        self.checked.append("lr")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.final_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.slow
def test_sigkill_then_rerun_restores_exactly(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "ssl_cyto", "fit", *_args(root, synth_folder, max_steps=10_000)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = root / "checkpoints" / "last.ckpt"
    try:
        _wait_for_checkpoint(last, min_step=4, proc=proc, timeout=240)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(last, map_location="cpu", weights_only=False)  # what the killed run left
    step = ckpt["global_step"]
    assert step >= 4 and step % 2 == 0

    probe = RestoreProbe(ckpt)
    path = run_fit(_args(root, synth_folder, max_steps=step + 3), callbacks=[probe])
    assert probe.checked == [
        "global_step",
        "state_dict",
        "teacher",
        "centre",
        "optimizer",
        "schedulers",
        "lr",
    ]
    final = torch.load(path, map_location="cpu", weights_only=False)
    assert final["global_step"] == step + 3  # went on training
    changed = [
        k
        for k, v in ckpt["state_dict"].items()
        if v.is_floating_point() and not torch.equal(v, final["state_dict"][k])
    ]
    assert any(k.startswith("backbone.") for k in changed)
    assert any(k.startswith("teacher_backbone.") for k in changed)
