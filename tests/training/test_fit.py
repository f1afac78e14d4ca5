"""``ssl-cyto fit``: every config parses, smoke configs run via the CLI, clear errors, resume helpers,
wandb id handling, and (slow) full smoke runs whose online kNN accuracy rises above its step-0 value."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ssl_cyto.cli import main as cli_main
from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.fit import run_fit, wandb_logged_in, wandb_mode, wandb_run_id

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
SMOKE = {"simclr": CONFIG_DIR / "smoke_simclr.yaml", "dino": CONFIG_DIR / "smoke_dino.yaml"}


def main(argv: list[str]) -> int:
    """``ssl-cyto fit ARGV`` through the command-line dispatcher (exit statuses as the shell sees them)."""
    return cli_main(["fit", *argv])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return env


def tiny_args(root: Path, data: Path, steps: int = 2) -> list[str]:
    """Overrides that make any smoke config a seconds-long run on a small generated folder."""
    return [
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false",
        f"--data.data={data}",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.batches_per_epoch=2",
        "--data.val_size=24",
        "--model.init_args.backbone_kwargs={width: 4, depth: 2}",
        "--model.init_args.input_size=32",
        "--checkpoint.every_n_train_steps=2",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("ssl_cyto.tasks.")
    assert printed["data"]["data"]
    for section in ("checkpoint", "knn", "guard", "throughput", "run"):
        assert section in printed


def test_configs_cover_both_methods() -> None:
    methods = {yaml.safe_load(c.read_text())["model"]["class_path"] for c in CONFIGS}
    assert {"ssl_cyto.tasks.SimCLR", "ssl_cyto.tasks.DINO"} <= methods
    assert {"smoke_simclr.yaml", "smoke_dino.yaml", "simclr_resnet50.yaml", "dino_vits16.yaml"} <= {
        c.name for c in CONFIGS
    }


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_smoke_fast_dev_run_via_cli(method: str, tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "ssl_cyto", "fit", "--config", str(SMOKE[method])]
    cmd += [*tiny_args(root, synth_folder), "--trainer.fast_dev_run=true"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Skipping val loop" not in proc.stderr  # Lightning's warning contradicts the kNN monitor
    assert not (root / "checkpoints" / "last.ckpt").exists()  # fast_dev_run writes no checkpoint


def test_bad_key_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(SMOKE["simclr"]), "--trainer.max_stepz=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "max_stepz" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "fit --help-full" in err  # one line, not the usage
    code = main(["--config", str(SMOKE["simclr"]), "--model.init_args.temperatur=0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "temperatur" in err
    code = main(["--config", str(SMOKE["simclr"]), "--trainer.max_steps=many"])
    err = capsys.readouterr().err
    assert code == 2 and "max_steps" in err


def test_missing_data_exits_2_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_shards"
    args = tiny_args(tmp_path / "run", missing)
    code = main(["--config", str(SMOKE["simclr"]), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and "Traceback" not in err


def test_run_fit_returns_last_ckpt_and_resumes(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "run"
    args = ["--config", str(SMOKE["simclr"]), *tiny_args(root, synth_folder, steps=2)]
    path = run_fit(args)
    assert Path(path) == root / "checkpoints" / "last.ckpt"
    import torch

    assert torch.load(path, map_location="cpu", weights_only=False)["global_step"] == 2
    # The rerun with a higher step budget continues from step 2 (not from 0).
    path = run_fit([*args, "--trainer.max_steps=4"])
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert ckpt["ssl_cyto"]["task_class"] == "ssl_cyto.tasks.SimCLR"
    assert len(ckpt["ssl_cyto"]["config_hash"]) == 16
    assert (root / "csv" / "version_1" / "metrics.csv").exists()  # one CSV version per (re)start
    assert (root / "csv" / "version_0" / "config.yaml").exists()


def test_wandb_run_id_kept_and_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    first = wandb_run_id(tmp_path)
    assert first and (tmp_path / "wandb_run_id").read_text().strip() == first
    assert wandb_run_id(tmp_path) == first
    # A non-zero rank never creates an id.
    monkeypatch.setenv("RANK", "1")
    assert wandb_run_id(tmp_path / "other") is None
    # Login detection: API key env, else a netrc entry for the wandb host.
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not wandb_logged_in()
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    os.chmod(tmp_path / "netrc", 0o600)
    assert wandb_logged_in()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode() == "online"


def test_wandb_logger_offline_keeps_one_run(tmp_path: Path, synth_folder: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path / "run"
    args = ["--config", str(SMOKE["simclr"]), *tiny_args(root, synth_folder, steps=2), "--run.logger=wandb"]
    run_fit(args)
    run_id = (root / "wandb_run_id").read_text().strip()
    run_fit([*args, "--trainer.max_steps=4"])
    runs = sorted(p.name for p in (root / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.endswith(run_id) for r in runs)  # `wandb sync` merges them into one run


def _knn_history(root: Path) -> list[tuple[int, float]]:
    import pandas as pd

    frames = [pd.read_csv(p) for p in sorted((root / "csv").glob("version_*/metrics.csv"))]
    df = pd.concat(frames)
    df = df[df["knn/acc"].notna()]
    return [(int(s), float(a)) for s, a in zip(df["step"], df["knn/acc"], strict=True)]


# Known limitation, not hidden (and not a regression of the issue-11 changes, as first suspected):
# in 40 CPU steps on 400 generated cells DINO's kNN does not rise. At 53d4b2c seed 0 happened to rise
# (0.648 -> 0.74) but seed 1 fell there too (0.68 -> 0.52); on today's code both seeds fall, and a
# control run with lr = 1e-7 falls just as far (0.68 -> 0.55, seed 1): the step-0 figure is the
# untrained network with BatchNorm's initial running statistics, and the later ones differ from it by
# the statistics' calibration, +-0.05 from step to step. Runs: docs/methods.md ("DINO at smoke scale").
# Strict, so the marker must go when a DINO smoke recipe does rise.
DINO_SHORT_RUN = pytest.mark.xfail(
    strict=True, reason="DINO's kNN does not rise within a 40-step CPU smoke run (docs/methods.md)"
)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", pytest.param("dino", marks=DINO_SHORT_RUN)])
def test_full_smoke_run_knn_rises(method: str, tmp_path: Path) -> None:
    """The real smoke config (generated cells in the cache, CSV logger): kNN accuracy must rise."""
    root = tmp_path / "run"
    t0 = time.time()
    path = run_fit(["--config", str(SMOKE[method]), f"--trainer.default_root_dir={root}"])
    assert Path(path).exists()
    history = _knn_history(root)
    assert history[0][0] == 0
    start, best_late = history[0][1], max(a for _, a in history[len(history) // 2 :])
    print(f"{method}: kNN {history} in {time.time() - t0:.0f} s")
    assert best_late >= start + 0.04, history
