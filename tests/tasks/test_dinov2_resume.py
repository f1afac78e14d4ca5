"""DINOv2 through real ``ssl-cyto fit`` processes: a fake-SLURM preemption (SIGUSR1 to the process
group) checkpoints once, requeues once and the rerun resumes and finishes; and a run SIGKILLed after its
step-5 checkpoint and rerun equals the uninterrupted run at step 10 (the same batches, block masks and
drop-path masks drawn again: parameters within 1e-6). The harnesses are those of tests/training."""

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

from ssl_cyto.tasks.registry import CONFIG_DIR
from tests.training.fake_slurm import (
    JOB_ID,
    clean_env,
    group_pids,
    kill_group,
    load,
    preemption_line,
    slurm_env,
    wait_for_step,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SMOKE = CONFIG_DIR / "smoke_dinov2.yaml"


def _args(root: Path, data: Path, workers: int, batches_per_epoch: int, every: int) -> list[str]:
    return [
        "--config",
        str(SMOKE),
        f"--trainer.default_root_dir={root}",
        "--trainer.max_steps=100000",
        "--trainer.max_epochs=-1",
        "--trainer.enable_progress_bar=false",
        "--run.logger=none",
        f"--data.data={data}",
        "--data.batch_size=8",
        f"--data.num_workers={workers}",
        f"--data.persistent_workers={'true' if workers else 'false'}",
        f"--data.batches_per_epoch={batches_per_epoch}",
        "--data.shuffle_buffer=16",
        "--data.val_size=16",
        f"--checkpoint.every_n_train_steps={every}",
    ]


def test_fake_slurm_preemption_checkpoints_requeues_and_resumes(tmp_path: Path, synth_folder: Path) -> None:
    cmd = [sys.executable, "-m", "ssl_cyto", "fit", *_args(tmp_path / "run", synth_folder, 2, 40, 3)]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=slurm_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        observed = wait_for_step(last, 3, [proc], [log], timeout=300)
        assert len(group_pids(proc.pid)) >= 3, "main process and 2 persistent loader workers"
        os.killpg(proc.pid, signal.SIGUSR1)
        code = proc.wait(timeout=180)
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=30)
    text = log.read_text()
    assert code == 130 and "Traceback" not in text, text[-3000:]
    assert (tmp_path / "scontrol.log").read_text().splitlines() == [f"requeue {JOB_ID}"]
    line = preemption_line(text)
    ckpt = load(last)
    step = ckpt["global_step"]
    assert line["signal"] == "SIGUSR1" and step == line["saved"] and step > observed >= 3
    state = ckpt["state_dict"]
    assert "mask_token" in state and any(k.startswith("teacher_ibot_head.") for k in state)
    done = subprocess.run(
        [*cmd, f"--trainer.max_steps={step + 2}"],
        cwd=tmp_path,
        env=slurm_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {last}" in done.stderr
    assert load(last)["global_step"] == step + 2


def _start(prefix: Path, root: Path, data: Path, hang_at: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.training.fit_runner", str(prefix), "10", str(hang_at), "--"]
    return subprocess.Popen(
        [*cmd, *_args(root, data, 0, 4, 5)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(prefix: Path) -> dict[int, dict]:
    path = Path(f"{prefix}.rank0.jsonl")
    return {r["step"]: r for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}


def test_killed_and_rerun_equals_uninterrupted(tmp_path: Path, synth_folder: Path) -> None:
    procs: list[subprocess.Popen] = []
    try:
        whole = _start(tmp_path / "a", tmp_path / "run_a", synth_folder)
        killed = _start(tmp_path / "b", tmp_path / "run_b", synth_folder, hang_at=6)
        procs += [whole, killed]
        deadline = time.time() + 400
        while 6 not in _rows(tmp_path / "b"):  # the step-5 checkpoint is written; it hangs at step 6
            assert killed.poll() is None, killed.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.time() < deadline, "the run to kill never reached step 6"
            time.sleep(0.2)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        ckpt = load(tmp_path / "run_b" / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 5
        rerun = _start(tmp_path / "c", tmp_path / "run_b", synth_folder)
        procs.append(rerun)
        for proc in (whole, rerun):
            _, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    a, c = _rows(tmp_path / "a"), _rows(tmp_path / "c")
    assert sorted(c) == list(range(6, 11))
    assert [c[s]["batch"] for s in range(6, 11)] == [a[s]["batch"] for s in range(6, 11)]
    assert [c[s]["drops"] for s in range(6, 11)] == [a[s]["drops"] for s in range(6, 11)]
    assert any(any(any(d) for d in a[s]["drops"]) for s in a), "drop path never dropped: nothing compared"
    pa = torch.load(f"{tmp_path / 'a'}.rank0.pt")["params"]
    pc = torch.load(f"{tmp_path / 'c'}.rank0.pt")["params"]
    assert pa.keys() == pc.keys() and "mask_token" in pa
    for k in pa:
        torch.testing.assert_close(pc[k], pa[k], rtol=0, atol=1e-6, msg=k)
