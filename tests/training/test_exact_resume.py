"""A run SIGKILLed after its step-5 checkpoint and rerun matches the uninterrupted run at step 10: the
same batches (cells and views) in the same order, parameters within 1e-6 (num_workers 0 and 2,
shards and folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssl_cyto.data.packing import pack
from ssl_cyto.data.scanning import catalog_from_path
from ssl_cyto.tasks.registry import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]


def _args(root: Path, data: Path, workers: int) -> list[str]:
    return [
        "--config",
        str(CONFIG_DIR / "smoke_simclr.yaml"),
        f"--trainer.default_root_dir={root}",
        "--trainer.max_steps=10",
        "--trainer.max_epochs=-1",
        "--trainer.enable_progress_bar=false",
        f"--data.data={data}",
        "--data.batch_size=8",
        f"--data.num_workers={workers}",
        f"--data.persistent_workers={'true' if workers else 'false'}",
        "--data.batches_per_epoch=4",  # step 5 is inside epoch 1
        "--data.shuffle_buffer=16",
        "--data.val_size=0",
        "--model.init_args.backbone_kwargs={width: 4, depth: 2}",
        "--model.init_args.input_size=32",
        "--model.init_args.projection_hidden_dim=32",
        "--model.init_args.projection_dim=16",
        "--checkpoint.every_n_train_steps=5",
        "--run.logger=none",
    ]


def _start(prefix: Path, root: Path, data: Path, workers: int, hang_at: int = 0) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="offline")
    cmd = [sys.executable, "-m", "tests.training.fit_runner", str(prefix), "10", str(hang_at), "--"]
    return subprocess.Popen(
        [*cmd, *_args(root, data, workers)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(prefix: Path) -> dict[int, dict]:
    path = Path(f"{prefix}.rank0.jsonl")
    return {r["step"]: r for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}


def _finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.fixture(scope="module")
def shards(synth_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "shards"
    pack(catalog_from_path(synth_folder), out, shard_size=50, progress=False)
    return out


COMBOS = [(kind, workers) for kind in ("shards", "folder") for workers in (0, 2)]


def _kill_at_step_6(proc: subprocess.Popen, prefix: Path, deadline: float) -> None:
    try:
        while 6 not in _rows(prefix):  # the step-5 checkpoint is written; it hangs at step 6
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.time() < deadline, "the run to kill never reached step 6"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def _compare(tmp: Path) -> None:
    a, b, c = _rows(tmp / "a"), _rows(tmp / "b"), _rows(tmp / "c")
    assert sorted(a) == list(range(1, 11)) and sorted(c) == list(range(6, 11))
    assert [b[s]["batch"] for s in range(1, 7)] == [a[s]["batch"] for s in range(1, 7)]
    assert [c[s]["batch"] for s in range(6, 11)] == [a[s]["batch"] for s in range(6, 11)]
    assert len({a[s]["batch"] for s in a}) == 10  # every step had its own batch
    pa = torch.load(f"{tmp / 'a'}.rank0.pt")["params"]
    pc = torch.load(f"{tmp / 'c'}.rank0.pt")["params"]
    assert pa.keys() == pc.keys()
    for k in pa:
        if pa[k].is_floating_point():
            torch.testing.assert_close(pc[k], pa[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_killed_and_rerun_equals_uninterrupted(shards: Path, synth_folder: Path, tmp_path: Path) -> None:
    """All four (data kind, num_workers) cases run side by side: uninterrupted, killed, rerun."""
    procs: list[subprocess.Popen] = []
    try:
        runs = {}
        for kind, workers in COMBOS:
            tmp = tmp_path / f"{kind}{workers}"
            data = shards if kind == "shards" else synth_folder
            whole = _start(tmp / "a", tmp / "run_a", data, workers)
            killed = _start(tmp / "b", tmp / "run_b", data, workers, hang_at=6)
            procs += [whole, killed]
            runs[(kind, workers)] = (tmp, data, whole, killed)
        deadline = time.time() + 400
        reruns = []
        for (_kind, workers), (tmp, data, _, killed) in runs.items():
            _kill_at_step_6(killed, tmp / "b", deadline)
            ckpt = torch.load(
                tmp / "run_b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
            )
            state = ckpt["CellDataModule"]
            assert ckpt["global_step"] == 5 and (state["epoch"], state["batches_done"]) == (1, 1)
            assert state["shape"] == {"world_size": 1, "num_workers": workers, "batch_size": 8}
            reruns.append(_start(tmp / "c", tmp / "run_b", data, workers))
        procs += reruns
        for proc in [*reruns, *(r[2] for r in runs.values())]:
            _finish(proc)
        for kind, workers in COMBOS:
            _compare(runs[(kind, workers)][0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
