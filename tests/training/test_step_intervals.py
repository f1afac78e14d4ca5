"""Epoch-end work decoupled from ``data.batches_per_epoch``: the online kNN and the collapse check on a
step interval, checkpoints on their own interval (not at every epoch end)."""

from __future__ import annotations

from pathlib import Path

from ssl_cyto.training.callbacks import CollapseGuard, OnlineKNN
from ssl_cyto.training.fit import build_cli
from tests.training.fake_slurm import load
from tests.training.test_fit import tiny_args


def test_checks_and_checkpoints_on_step_intervals(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    args = [*tiny_args(root, synth_folder, steps=7), "--config", "ssl_cyto/configs/smoke_simclr.yaml"]
    args = [*args[-2:], *args[:-2], "--run.logger=none", "--data.batches_per_epoch=2"]
    args += ["--knn.every_n_steps=3", "--guard.every_n_steps=3", "--checkpoint.every_n_train_steps=5"]
    args += ["--checkpoint.save_on_epoch_end=false"]
    cli = build_cli(args, run=True)
    knn = next(cb for cb in cli.trainer.callbacks if isinstance(cb, OnlineKNN))  # type: ignore[attr-defined]
    guard = next(cb for cb in cli.trainer.callbacks if isinstance(cb, CollapseGuard))  # type: ignore[attr-defined]
    assert [s for s, _ in knn.history] == [0, 3, 6]  # not at the epoch ends (2, 4, 6)
    assert guard.last_stats and not guard.tripped
    ckpts = root / "checkpoints"
    # step 5 on the interval, step 7 at the end; no epoch-end saves at 2, 4 or 6
    assert load(ckpts / "last.ckpt")["global_step"] == 7 and load(ckpts / "previous.ckpt")["global_step"] == 5
