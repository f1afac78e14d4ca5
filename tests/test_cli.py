"""The entry point: every subcommand is registered and `--help` never imports the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssl_cyto.cli import COMMANDS, main

HEAVY = ("torch", "pytorch_lightning", "faiss", "umap", "wandb", "lightly", "timm", "pandas", "sklearn")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from ssl_cyto.cli import _build_parser\n"
        "_build_parser().format_help()\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported heavy modules: {out.stdout.strip()}"


@pytest.mark.parametrize("words", [w for w in COMMANDS if w != ("fit",)], ids=" ".join)
def test_every_subcommand_has_help(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*words, "--help"])
    assert exc.value.code == 0
    assert "usage: ssl-cyto" in capsys.readouterr().out


def test_group_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    out = capsys.readouterr().out
    for sub in ("scan", "agreement", "synth"):
        assert sub in out
