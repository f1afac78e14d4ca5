"""``ssl-cyto data synth``: the flags, the summary it prints, and bad input as exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ssl_cyto.cli import main
from ssl_cyto.cli import synth as synth_cli
from ssl_cyto.data.synth import LAYOUTS


def test_layout_choices_are_the_generator_layouts() -> None:
    assert synth_cli.LAYOUT_CHOICES == LAYOUTS


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "o"), "--layout", "folder", "--per-class", "2", "--size", "32"])
    assert synth_cli.run(args) == 0
    assert "images/s" in capsys.readouterr().out
    assert len(list((tmp_path / "o").rglob("*.png"))) == 10
    argv = ["data", "synth", str(tmp_path / "p"), "--layout", "folder", "--per-class", "0"]
    assert main(argv) == 2
    assert "per_class must be >= 1" in capsys.readouterr().err


def test_unwritable_output_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["data", "synth", str(blocker / "out"), "--layout", "folder", "--per-class", "1"]) == 2
    assert "cannot create" in capsys.readouterr().err
