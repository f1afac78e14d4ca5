"""The parts of preemption handling that need no training run: the signal flag (ignored in a forked
child), atomic checkpoint writes, the resume choice by global step, the SLURM job id and requeue, and
the cluster plugins."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

from ssl_cyto.training.preemption import (
    AtomicCheckpointIO,
    PreemptionFlag,
    checkpoint_step,
    cluster_plugins,
    find_resume_checkpoint,
    requeue_job,
    slurm_job_id,
)


def _ckpt(path: Path, step: int, weights_only: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt: dict = {"global_step": step, "state_dict": {"w": torch.ones(2) * step}}
    if not weights_only:
        ckpt["optimizer_states"] = []
    torch.save(ckpt, path)
    return path


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_flag_records_the_signal_in_its_process_only(restore_signals: None) -> None:
    flag = PreemptionFlag(step=lambda: 7)
    flag.install(["SIGUSR1", "SIGTERM"])
    pid = os.fork()
    if pid == 0:  # a forked "loader worker": the inherited handler ignores the signal
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(3 if flag.requested else 0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not flag.requested
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.time() + 5
    while not flag.requested and time.time() < deadline:
        time.sleep(0.01)
    assert flag.signal_name == "SIGTERM" and flag.step_at_signal == 7
    os.kill(os.getpid(), signal.SIGUSR1)  # a second signal changes nothing
    time.sleep(0.05)
    assert flag.signal_name == "SIGTERM"


def test_resume_picks_the_highest_step_that_loads_never_the_newest_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert find_resume_checkpoint(tmp_path) is None
    last = _ckpt(tmp_path / "checkpoints" / "last.ckpt", 40)
    stale = _ckpt(tmp_path / "hpc_ckpt_1.ckpt", 0)  # what a forked worker used to leave
    os.utime(last, (time.time() - 100, time.time() - 100))  # the stale file is the newest
    assert find_resume_checkpoint(tmp_path) == str(last)
    later = _ckpt(tmp_path / "hpc_ckpt_2.ckpt", 41)
    assert find_resume_checkpoint(tmp_path) == str(later)
    broken = tmp_path / "checkpoints" / "epoch=9.ckpt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    weights = _ckpt(tmp_path / "checkpoints" / "weights.ckpt", 99, weights_only=True)
    capsys.readouterr()
    assert find_resume_checkpoint(tmp_path) == str(later)
    err = capsys.readouterr().err
    assert f"not resuming from {broken}: it does not load" in err
    assert f"not resuming from {weights}: it holds weights only" in err
    assert str(stale) not in err
    _ckpt(tmp_path / "checkpoints" / "last.ckpt", 41)  # a tie goes to last.ckpt
    assert find_resume_checkpoint(tmp_path, quiet=True) == str(last)
    with pytest.raises(ValueError, match="not a Lightning training checkpoint"):
        torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
        checkpoint_step(tmp_path / "x.ckpt")


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "sub" / "a.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {}, "optimizer_states": []}, target)
    assert checkpoint_step(target) == 1
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        io.save_checkpoint({"global_step": 2, "bad": lambda: None}, target)  # cannot be pickled
    assert checkpoint_step(target) == 1  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.ckpt"]  # no temporary left


def test_slurm_job_id_and_requeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert slurm_job_id() == "123"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "120")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "120_3"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "1; rm -rf /")
    assert slurm_job_id() is None

    log = tmp_path / "log"
    stub = tmp_path / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit ${{FAIL:-0}}\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert requeue_job("123") is True
    assert log.read_text().split() == ["requeue", "123"]
    monkeypatch.setenv("FAIL", "1")
    assert requeue_job("123") is False
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert requeue_job("123") is False


def test_cluster_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("SLURM_", "TORCHELASTIC_")):
            monkeypatch.delenv(key)
    plain = cluster_plugins(None)
    assert [type(p) for p in plain] == [AtomicCheckpointIO]
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "pretrain")
    slurm = cluster_plugins([])
    envs = [p for p in slurm if isinstance(p, SLURMEnvironment)]
    assert len(envs) == 1 and envs[0].auto_requeue is False
    given = LightningEnvironment()
    assert cluster_plugins([given])[0] is given and not any(
        isinstance(p, SLURMEnvironment) for p in cluster_plugins([given])
    )
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # torchrun inside SLURM: TorchElastic wins
    assert not any(isinstance(p, SLURMEnvironment) for p in cluster_plugins(None))


def _fake_trainer(tmp_path: Path, step: int) -> SimpleNamespace:
    saved: list[str] = []
    strategy = SimpleNamespace(
        reduce_boolean_decision=lambda v, all=True: bool(v),
        broadcast=lambda v, src=0: v,
        barrier=lambda name=None: None,
    )
    return SimpleNamespace(
        global_step=step,
        is_global_zero=True,
        strategy=strategy,
        checkpoint_callbacks=[],
        default_root_dir=str(tmp_path),
        save_checkpoint=saved.append,
        saved=saved,
    )


def test_signal_during_start_up_stops_at_train_start(restore_signals: None, tmp_path: Path) -> None:
    from ssl_cyto.training.callbacks.preemption import Preemption
    from ssl_cyto.training.preemption import Preempted
    from ssl_cyto.training.stop_flag import early_signals

    with early_signals():
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while torch is imported or DDP is set up
        cb, trainer = Preemption(), _fake_trainer(tmp_path, 0)
        cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
        with pytest.raises(Preempted) as stop:
            cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert stop.value.signal_name == "SIGTERM" and trainer.saved and stop.value.exit_code == 143
    assert not stop.value.requeue  # SIGTERM is not a requeue signal by default


def test_no_checkpoint_from_a_non_finite_step(restore_signals: None, tmp_path: Path) -> None:
    from ssl_cyto.training.callbacks.preemption import Preemption
    from ssl_cyto.training.preemption import Preempted

    cb, trainer = Preemption(), _fake_trainer(tmp_path, 5)
    cb.flag.signal_name = "SIGUSR1"
    with pytest.raises(Preempted) as stop:
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(float("nan"))}, None, 0)  # type: ignore[arg-type]
    assert stop.value.path is None and trainer.saved == [] and stop.value.exit_code == 1
    cb, trainer = Preemption(), _fake_trainer(tmp_path, 6)
    cb.flag.signal_name = "SIGUSR1"
    with pytest.raises(Preempted) as stop:
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, 0)  # type: ignore[arg-type]
    assert stop.value.path and trainer.saved and stop.value.exit_code == 130
