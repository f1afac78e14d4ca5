"""ProgressLines: a fit whose output goes to a file prints progress lines (step / total, loss, images/s,
ETA, kNN) and none of Lightning's tips; the line timing follows a fake clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.callbacks.progress_lines import ProgressLines, hms
from tests.training.test_fit import _env, tiny_args


def test_hms() -> None:
    assert hms(3723.4) == "01:02:03" and hms(float("inf")) == "--:--:--"


def test_lines_follow_the_clock() -> None:
    now = [0.0]
    cb = ProgressLines(every_s=10, enabled=True)
    cb.clock = lambda: now[0]
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=100))
    trainer = SimpleNamespace(is_global_zero=True, global_step=0, world_size=2, fit_loop=loop, callbacks=[])
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    batch = [torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)]
    for step in range(1, 21):
        now[0] += 1.0
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.5)}, batch, step)  # type: ignore[arg-type]
    assert [line.split(",")[0] for line in cb.lines[1:]] == [
        "fit: step 10/100 (10%)",
        "fit: step 20/100 (20%)",
    ]
    # 10 steps x 8 images x 2 ranks in 10 s; 80 steps left at 1 s each
    assert "loss 2.5, 16 img/s, elapsed 00:00:20, ETA 00:01:20" in cb.lines[2]


def test_fit_into_a_file_prints_progress_lines(tmp_path: Path, synth_folder: Path) -> None:
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "ssl_cyto", "fit", "--config", str(CONFIG_DIR / "smoke_simclr.yaml")]
    cmd += [
        *tiny_args(tmp_path / "run", synth_folder, steps=6),
        "--progress.every_s=0.01",
        "--run.logger=none",
    ]
    cmd.remove("--trainer.enable_progress_bar=false")  # not a terminal: no bar by default
    with log.open("w") as out:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT, timeout=300
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    lines = [ln for ln in text.splitlines() if ln.startswith("fit: step")]
    assert len(lines) >= 3 and lines[-1].startswith("fit: step 6/6 (100%)"), text[-3000:]
    assert all("img/s" in ln and "ETA" in ln and "loss" in ln for ln in lines)
    assert any("kNN" in ln for ln in lines)
    assert "Tip:" not in text and "\r" not in text and "it/s" not in text  # no Lightning tips, no bar
    assert "on_after_batch_transfer" not in text
