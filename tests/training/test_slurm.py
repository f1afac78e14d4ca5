"""Preemption under a fake SLURM allocation, with real processes.

The signal goes to the whole process group, DataLoader workers (2, persistent) included, as SLURM's
``--signal=SIGUSR1@90`` does. Each SIGUSR1: ``scontrol requeue`` is called exactly once, the run exits 130
after saving one checkpoint holding the step reached at the step boundary after the signal, and the
rerun of the same command resumes from it. Three SIGUSR1 preemptions, then one SIGTERM (with the default
signals: a checkpoint, no requeue, exit 143), are chained through the same run folder; a last rerun
finishes. A second test does the same with 2 DDP ranks
("nodes" on localhost with SLURM variables) and ends with both ranks' parameters identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.training.fake_slurm import (
    JOB_ID,
    fit_cmd,
    free_port,
    group_pids,
    kill_group,
    load,
    preemption_line,
    slurm_env,
    wait_all,
    wait_for_step,
)

pytestmark = pytest.mark.slow


def _requeues(tmp: Path) -> list[str]:
    log = tmp / "scontrol.log"
    return log.read_text().splitlines() if log.exists() else []


def _preempt_once(tmp: Path, cmd: list[str], sig: signal.Signals, previous: int, n: int, requeues: int) -> int:
    """Run ``cmd``, signal its process group once training is past ``previous`` + 3, check the result."""
    root = tmp / "run"
    last = root / "checkpoints" / "last.ckpt"
    log = tmp / f"stderr_{n}.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=slurm_env(tmp), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        # Periodic checkpoints every 3 steps: the first one above `previous` proves the run resumed
        # (a run restarted from 0 would write step 3 first).
        observed = wait_for_step(last, previous + 3, [proc], [log], timeout=240)
        if previous:
            assert f"resuming from {last}" in log.read_text()
        assert len(group_pids(proc.pid)) >= 3, "main process and 2 persistent loader workers"
        os.killpg(proc.pid, sig)
        (code,) = wait_all([proc], timeout=120)
        deadline = time.time() + 30
        while group_pids(proc.pid) and time.time() < deadline:  # the workers go with the main process
            time.sleep(0.2)
        assert group_pids(proc.pid) == [], "loader workers left behind"
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=30)
    text = log.read_text()
    assert code == (130 if sig == signal.SIGUSR1 else 143), text[-3000:]  # SIGTERM: stop, no requeue
    assert "Traceback" not in text, text[-3000:]
    assert "rerun the same command to resume" in text
    assert _requeues(tmp) == [f"requeue {JOB_ID}"] * requeues  # once per SIGUSR1
    line = preemption_line(text)
    assert line["signal"] == sig.name and line["path"] == str(last)
    ckpt = load(last)
    step = ckpt["global_step"]
    assert step == line["saved"] == ckpt["ssl_cyto"]["global_step"]
    # the boundary right after the signal: the next step, or this one when the signal came after its
    # optimiser step but before the step-end hooks
    assert line["after"] is not None and line["after"] <= step <= line["after"] + 1
    assert step > observed >= previous + 3 > 0
    history = ckpt["callbacks"]["Preemption"]["history"]
    assert len(history) == n and history[-1]["step"] == step and history[-1]["signal"] == sig.name
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.ckpt", "previous.ckpt"]  # no temporary
    return int(step)


def test_signals_to_the_process_group_checkpoint_once_and_requeue_once(tmp_path: Path, synth_folder: Path) -> None:
    cmd = fit_cmd(tmp_path / "run", synth_folder)
    step = 0
    for n, sig in enumerate([signal.SIGUSR1, signal.SIGUSR1, signal.SIGUSR1, signal.SIGTERM], start=1):
        step = _preempt_once(tmp_path, cmd, sig, step, n, requeues=min(n, 3))
    # The requeued job (the same command, here told to stop 2 steps later) resumes and finishes.
    done = subprocess.run(
        [*cmd, f"--trainer.max_steps={step + 2}"],
        cwd=tmp_path,
        env=slurm_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in done.stderr
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == step + 2
    assert len(_requeues(tmp_path)) == 3


def _start_ranks(tmp: Path, cmd: list[str], port: int, tag: str) -> tuple[list[subprocess.Popen], list[Path]]:
    procs: list[subprocess.Popen] = []
    logs = [tmp / f"stderr_{tag}_rank{r}.txt" for r in range(2)]
    for rank in range(2):
        with logs[rank].open("w") as err:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=tmp,
                    env=slurm_env(tmp, rank=rank, world=2, port=port),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    # both "nodes" in one process group, so one killpg reaches both and their workers
                    process_group=0 if rank == 0 else procs[0].pid,
                )
            )
    return procs, logs


def test_ddp_preemption_two_nodes(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    cmd = fit_cmd(root, synth_folder, "--trainer.strategy=ddp", "--trainer.accelerator=cpu", nodes=2)
    procs, logs = _start_ranks(tmp_path, cmd, free_port(), "a")
    try:
        observed = wait_for_step(last, 3, procs, logs, timeout=300)
        os.killpg(procs[0].pid, signal.SIGUSR1)
        codes = wait_all(procs, timeout=120)
    finally:
        kill_group(procs[0].pid)
        for p in procs:
            p.wait(timeout=30)
    texts = [log.read_text() for log in logs]
    assert codes == [130, 130], texts[0][-2000:] + texts[1][-2000:]
    assert _requeues(tmp_path) == [f"requeue {JOB_ID}"]  # rank 0 only, once
    line = preemption_line(texts[0])
    assert "received" not in texts[1]  # rank 1 says nothing
    step = load(last)["global_step"]
    assert step == line["saved"] > observed >= 3

    dump = tmp_path / "dump"
    dump.mkdir()
    callback = json.dumps({"class_path": "tests.training.fake_slurm.DumpParams", "init_args": {"out_dir": str(dump)}})
    rerun = [*cmd, f"--trainer.max_steps={step + 2}", f"--trainer.callbacks+={callback}"]
    procs, logs = _start_ranks(tmp_path, rerun, free_port(), "b")
    try:
        codes = wait_all(procs, timeout=300)
    finally:
        kill_group(procs[0].pid)
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts[0][-2000:] + texts[1][-2000:]
    assert all(f"resuming from {last}" in t for t in texts[:1])
    ranks = [load(dump / f"params_rank{r}.pt") for r in range(2)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == step + 2
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), f"{key} differs between ranks"
    assert len(_requeues(tmp_path)) == 1
