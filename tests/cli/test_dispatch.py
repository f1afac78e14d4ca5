"""The entry point: every subcommand is registered and answers ``--help``; groups and unknown words."""

from __future__ import annotations

import pytest

from ssl_cyto.cli import COMMANDS, main


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


def test_unknown_subcommand_of_a_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "scna"]) == 2
    assert "unknown subcommand 'scna'" in capsys.readouterr().err


def test_debug_flag_is_accepted_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--debug", "pack", "--help"])
    assert exc.value.code == 0
