"""The resume decision (ssl_cyto.training.resume): the configured checkpoint.dirpath is searched, a
checkpoint that does not load falls back to the previous one (and says so), checkpoints that exist but
none loads stop the run with an error naming them, a resume of another shape is refused unless allowed,
and (slow, real processes under fake SLURM / 2-process gloo) a requeued job resumes from a custom
checkpoint.dirpath and past a truncated newest checkpoint, and both ranks
resume at the same step or both stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from ssl_cyto.training.preemption import ResumeError, find_resume_checkpoint
from ssl_cyto.training.resume import reshape_changes
from tests.training.fake_slurm import (
    JOB_ID,
    fit_cmd,
    free_port,
    kill_group,
    load,
    preemption_line,
    slurm_env,
    wait_all,
    wait_for_step,
)
from tests.training.test_fit import main, tiny_args


def test_find_searches_dirpath_and_is_strict_when_nothing_loads(tmp_path: Path) -> None:
    import torch

    custom = tmp_path / "elsewhere"
    custom.mkdir()
    torch.save({"global_step": 5, "state_dict": {}, "optimizer_states": []}, custom / "last.ckpt")
    assert find_resume_checkpoint(tmp_path / "root") is None
    assert find_resume_checkpoint(tmp_path / "root", dirs=[custom]) == str(custom / "last.ckpt")
    (custom / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert find_resume_checkpoint(tmp_path / "root", dirs=[custom], quiet=True) is None
    with pytest.raises(ResumeError, match=r"no checkpoint to resume from loads: .*last\.ckpt"):
        find_resume_checkpoint(tmp_path / "root", dirs=[custom], quiet=True, strict=True)


def test_reshape_changes() -> None:
    now = {"world_size": 2, "num_workers": 4, "batch_size": 8}
    assert reshape_changes(None, now) == []
    assert reshape_changes(now, now) == []
    old = {"world_size": 1, "num_workers": 4, "batch_size": 16}
    assert reshape_changes(old, now) == ["batch_size: 16 -> 8", "world_size: 1 -> 2"]


def test_dirpath_resume_fallback_and_reshape(
    tmp_path: Path, synth_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, ck = tmp_path / "run", tmp_path / "ck"
    args = [*tiny_args(root, synth_folder, steps=4), "--run.logger=none", f"--checkpoint.dirpath={ck}"]
    assert main(["--config", "smoke_simclr", *args]) == 0
    assert load(ck / "last.ckpt")["global_step"] == 4 and load(ck / "previous.ckpt")["global_step"] == 2
    capsys.readouterr()

    assert (
        main(["--config", "smoke_simclr", *args, "--trainer.max_steps=6"]) == 0
    )  # the custom dirpath resumes
    assert f"resuming from {ck / 'last.ckpt'}" in capsys.readouterr().err
    assert load(ck / "last.ckpt")["global_step"] == 6

    (ck / "last.ckpt").write_bytes((ck / "last.ckpt").read_bytes()[:1000])  # a truncated last.ckpt
    assert main(["--config", "smoke_simclr", *args, "--trainer.max_steps=8"]) == 0
    err = capsys.readouterr().err
    assert f"not resuming from {ck / 'last.ckpt'}: it does not load" in err
    assert f"resuming from {ck / 'previous.ckpt'}" in err  # step 4, the one before
    assert load(ck / "last.ckpt")["global_step"] == 8

    assert main(["--config", "smoke_simclr", *args, "--trainer.max_steps=10", "--data.batch_size=4"]) == 2
    err = capsys.readouterr().err
    assert "batch_size: 8 -> 4" in err and "--run.allow_reshape" in err
    assert load(ck / "last.ckpt")["global_step"] == 8  # untouched
    reshaped = [*args, "--trainer.max_steps=10", "--data.batch_size=4", "--run.allow_reshape=true"]
    assert main(["--config", "smoke_simclr", *reshaped]) == 0
    assert "resuming with another shape (batch_size: 8 -> 4)" in capsys.readouterr().err
    assert load(ck / "last.ckpt")["global_step"] == 10

    for f in ck.iterdir():
        f.write_bytes(b"garbage")
    assert main(["--config", "smoke_simclr", *args, "--trainer.max_steps=12"]) == 2  # never a silent restart
    assert "no checkpoint to resume from loads" in capsys.readouterr().err


def _two_ranks(tmp: Path, cmd: list[str], tag: str, timeout: float = 300) -> tuple[list[int], list[str]]:
    port = free_port()
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
                    process_group=0 if rank == 0 else procs[0].pid,
                )
            )
    try:
        codes = wait_all(procs, timeout=timeout)
    finally:
        kill_group(procs[0].pid)
        for p in procs:
            p.wait(timeout=30)
    return codes, [log.read_text() for log in logs]


@pytest.mark.slow
def test_one_rank_failing_to_read_never_starts_alone(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    cmd = fit_cmd(
        root, synth_folder, "--trainer.strategy=ddp", "--trainer.accelerator=cpu", workers=0, nodes=2
    )
    codes, texts = _two_ranks(tmp_path, [*cmd, "--trainer.max_steps=3"], "a")
    assert codes == [0, 0], texts[0][-2000:] + texts[1][-2000:]

    def flaky(failures: int) -> str:
        spec = {
            "class_path": "tests.training.fake_slurm.FlakyCheckpointIO",
            "init_args": {"failures": failures},
        }
        return f"--trainer.plugins={json.dumps(spec)}"

    # a transient error on rank 1 (one failed read): retried, both ranks resume at step 3
    dump = tmp_path / "dump"
    dump.mkdir()
    callback = json.dumps(
        {"class_path": "tests.training.fake_slurm.DumpParams", "init_args": {"out_dir": str(dump)}}
    )
    rerun = [*cmd, "--trainer.max_steps=5", flaky(1), f"--trainer.callbacks+={callback}"]
    codes, texts = _two_ranks(tmp_path, rerun, "b")
    assert codes == [0, 0], texts[0][-2000:] + texts[1][-2000:]
    assert "rank 1 could not read" in texts[1] and f"resuming from {last}" in texts[0]
    assert [load(dump / f"params_rank{r}.pt")["global_step"] for r in range(2)] == [5, 5]

    # rank 1 cannot read it at all: both ranks stop with the error, nothing is overwritten
    codes, texts = _two_ranks(tmp_path, [*cmd, "--trainer.max_steps=7", flaky(-1)], "c")
    assert codes == [2, 2], texts[0][-2000:] + texts[1][-2000:]
    assert all("not every rank could read it" in t for t in texts)
    assert load(last)["global_step"] == 5


def test_reshape_keeps_the_schedule_in_samples(tmp_path: Path, synth_folder: Path) -> None:
    """8 steps of batch 8 (64 samples); the same run cut at step 4 and resumed with batch 4: the resumed
    run ends after 64 samples (step 12) and its LR at each step is the straight run's at as many samples."""

    def cb(name: str, **init_args: object) -> str:
        spec = {"class_path": f"tests.training.fake_slurm.{name}", "init_args": init_args}
        return f"--trainer.callbacks+={json.dumps(spec)}"

    def run(tag: str, *extra: str) -> dict[int, float]:
        out = tmp_path / f"lr_{tag}.jsonl"
        args = [
            *tiny_args(tmp_path / tag.split("_")[0], synth_folder, steps=8),
            "--run.logger=none",
            "--trainer.max_epochs=100",
            "--model.init_args.lr_scaling=none",  # the same peak LR for both batch sizes
            "--model.init_args.warmup_steps=2",
            cb("RecordLR", out_file=str(out)),
            *extra,
        ]
        assert main(["--config", "smoke_simclr", *args]) == 0
        return {int(s): lr for s, lr in (json.loads(line) for line in out.read_text().splitlines())}

    straight = run("a")
    assert sorted(straight) == list(range(8))
    first = run("b_first", cb("StopAt", step=4))
    assert load(tmp_path / "b" / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert first == {s: straight[s] for s in range(4)}
    resumed = run("b_resumed", "--data.batch_size=4", "--run.allow_reshape=true")
    assert sorted(resumed) == list(range(4, 12))  # 32 + 8 x 4 = 64 samples, as the straight run
    assert load(tmp_path / "b" / "checkpoints" / "last.ckpt")["global_step"] == 12
    for s in range(4, 8):  # step 4 + 2j of batch 4 has seen 32 + 8j samples: step 4 + j of batch 8
        assert resumed[4 + 2 * (s - 4)] == pytest.approx(straight[s], rel=1e-6)
    assert straight[4] > resumed[5] > straight[5]  # in between, not a step of the straight run


def _preempted_job(tmp: Path, cmd: list[str], last: Path, min_step: int) -> int:
    """Run ``cmd`` as a fake SLURM job, send SIGUSR1 to its process group once ``last`` holds step
    ``min_step``: the job checkpoints to ``last``, requeues itself once and exits 130; its saved step."""
    log = tmp / "stderr_job.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=slurm_env(tmp), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        wait_for_step(last, min_step, [proc], [log], timeout=240)
        os.killpg(proc.pid, signal.SIGUSR1)
        (code,) = wait_all([proc], timeout=120)
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=30)
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert (tmp / "scontrol.log").read_text().splitlines() == [f"requeue {JOB_ID}"]
    line = preemption_line(text)
    assert line["path"] == str(last)
    return int(line["saved"])


def _requeued(tmp: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """The requeued job: the same command, under the same fake SLURM job."""
    done = subprocess.run(cmd, cwd=tmp, env=slurm_env(tmp), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_requeued_job_resumes_from_its_custom_dirpath(tmp_path: Path, synth_folder: Path) -> None:
    ck = tmp_path / "custom_ck"
    cmd = fit_cmd(tmp_path / "run", synth_folder, f"--checkpoint.dirpath={ck}", workers=0)
    step = _preempted_job(tmp_path, cmd, ck / "last.ckpt", min_step=3)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    done = _requeued(tmp_path, [*cmd, f"--trainer.max_steps={step + 2}"])
    assert f"resuming from {ck / 'last.ckpt'}" in done.stderr
    assert f"training from step {step} to {step + 2}" in done.stderr  # not from step 0
    assert load(ck / "last.ckpt")["global_step"] == step + 2


@pytest.mark.slow
def test_requeued_job_skips_a_truncated_newest_checkpoint(tmp_path: Path, synth_folder: Path) -> None:
    ck = tmp_path / "run" / "checkpoints"
    cmd = fit_cmd(tmp_path / "run", synth_folder, workers=0)
    step = _preempted_job(tmp_path, cmd, ck / "last.ckpt", min_step=6)
    before = load(ck / "previous.ckpt")["global_step"]
    assert 0 < before < step
    (ck / "last.ckpt").write_bytes((ck / "last.ckpt").read_bytes()[:2000])  # the node died mid-write
    done = _requeued(tmp_path, [*cmd, f"--trainer.max_steps={step + 2}"])
    assert f"not resuming from {ck / 'last.ckpt'}: it does not load" in done.stderr
    assert f"resuming from {ck / 'previous.ckpt'}" in done.stderr
    assert f"training from step {before} to {step + 2}" in done.stderr
    assert load(ck / "last.ckpt")["global_step"] == step + 2
