"""``ssl-cyto data agreement``: table or JSON, bad input as exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_cyto.cli import main


def _cli(argv: list[str]) -> int:
    return main(["data", "agreement", *argv])


def test_agreement_cli(tmp_path: Path, synth_aml: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli([str(synth_aml)]) == 0
    out = capsys.readouterr().out
    assert "gold_vs_reannot1" in out and "kappa" in out
    assert _cli([str(synth_aml / "annotations.dat"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reannotated"] > 0
    assert _cli([str(tmp_path)]) == 2
    assert "no annotations.dat" in capsys.readouterr().err
    (tmp_path / "annotations.dat").write_text("a.tiff A B C D E\n")
    assert _cli([str(tmp_path)]) == 2
    assert "annotations.dat:1" in capsys.readouterr().err
    (tmp_path / "annotations.dat").write_text("a.tiff A nan nan\n")
    assert _cli([str(tmp_path)]) == 2
    assert "no re-annotated cells" in capsys.readouterr().err
