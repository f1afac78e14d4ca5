"""``ssl-cyto fit`` as a new user meets it: a short static ``--help`` (no torch) naming the methods and the
packaged configs, ``--help-full`` for the whole parser, short method names and packaged config names, and
a one-line error for a key typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_cyto.cli import main
from ssl_cyto.cli.fit import rewrite_argv
from ssl_cyto.tasks.registry import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from ssl_cyto.cli import main
code = main(["fit", *sys.argv[1:]])
heavy = sorted(m for m in ("torch", "pytorch_lightning", "lightning_fabric", "jsonargparse") if m in sys.modules)
print("\\n@@" + json.dumps({"code": code, "heavy": heavy}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def test_help_is_short_static_and_light() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "--help"], capture_output=True, text=True, env=_env(), timeout=60
    )
    text, _, tail = out.stdout.rpartition("@@")
    assert json.loads(tail) == {"code": 0, "heavy": []}, out.stderr
    assert "SimCLR" in text and "DINO" in text
    for method in ("simclr", "dino"):
        assert f"  {method} " in text
    for config in CONFIG_DIR.glob("*.yaml"):
        assert config.stem in text
    for option in ("--help-full", "--trainer.max_steps", "--data.data", "--config FILE|NAME", "--model NAME"):
        assert option in text
    assert len(text.splitlines()) < 60


def test_help_full_is_lightning_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--help-full"]) == 0
    out = capsys.readouterr().out
    assert "--trainer.max_steps" in out and "--preemption.requeue" in out and "--budget.safety" in out


def test_rewrite_short_method_and_config_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert rewrite_argv(["--model", "simclr"]) == ["--model", "ssl_cyto.tasks.simclr.SimCLR"]
    assert rewrite_argv(["--model=DINO"]) == ["--model", "ssl_cyto.tasks.dino.DINO"]
    assert rewrite_argv(["--model", "my.pkg.Task"]) == ["--model", "my.pkg.Task"]
    smoke = str(CONFIG_DIR / "smoke_simclr.yaml")
    assert rewrite_argv(["--config", "smoke_simclr", "--x=1"]) == ["--config", smoke, "--x=1"]
    assert rewrite_argv(["-c=smoke_simclr.yaml"]) == ["-c", smoke]
    (tmp_path / "smoke_simclr").write_text("trainer: {}\n")  # a local file of that name wins
    assert rewrite_argv(["--config", "smoke_simclr"]) == ["--config", "smoke_simclr"]
    assert rewrite_argv(["--model.init_args.lr=0.1"]) == ["--model.init_args.lr=0.1"]


def test_model_by_short_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--model", "dino", "--data.data=synth:folder", "--print_config"]) == 0
    assert "class_path: ssl_cyto.tasks.dino.DINO" in capsys.readouterr().out


def test_key_typo_is_one_line_through_the_entry_point(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ssl_cyto", "fit", "--config", "smoke_simclr", "--trainer.max_stepz=3"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=180,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "max_stepz" in lines[0] and "ssl-cyto fit --help-full" in lines[0]
    assert "usage" not in out.stderr and "Traceback" not in out.stderr


def test_yaml_typo_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer:\n  max_stepz: 3\n")
    assert main(["fit", "--config", "smoke_simclr", "--config", str(typo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.max_stepz" in err[0] and "--help-full" in err[0]
