"""report.py: reports start with the exact command, then data, hardware and date."""

from __future__ import annotations

from pathlib import Path

from ssl_cyto.evaluation.report import command_line, markdown_table, write_report
from ssl_cyto.formats.provenance import hardware_summary


def test_report_starts_with_command(tmp_path: Path) -> None:
    fig = tmp_path / "out" / "conf.png"
    fig.parent.mkdir()
    fig.write_bytes(b"\x89PNG")
    cmd = ["ssl-cyto", "probe", "emb dir", "--fast"]
    path = write_report(
        tmp_path / "out",
        title="Probe",
        command=cmd,
        data="3 cells of folder:x",
        sections=[("Results", markdown_table([{"a": 1, "b": 0.12345}]))],
        figures=[fig],
    )
    assert path == tmp_path / "out" / "report.md"
    lines = path.read_text().splitlines()
    assert lines[0] == "```"
    assert lines[1] == "ssl-cyto probe 'emb dir' --fast"
    head = "\n".join(lines[:8])
    assert "**Data:** 3 cells of folder:x" in head
    assert "**Hardware:** CPU:" in head
    assert "**Date:** 20" in head
    text = path.read_text()
    assert "# Probe" in text and "## Results" in text
    assert "| 1 | 0.123 |" in text
    assert "![conf](conf.png)" in text


def test_command_line_quotes_and_names_cli() -> None:
    assert command_line(["/x/.venv/bin/ssl-cyto", "umap", "a b"]) == "ssl-cyto umap 'a b'"


def test_hardware_summary_mentions_torch_and_cores() -> None:
    s = hardware_summary()
    assert "cores" in s and "RAM" in s and "torch" in s


def test_markdown_table_blanks_and_escapes() -> None:
    t = markdown_table([{"x": None, "y": float("nan"), "z": "a|b"}, {"w": 2}])
    lines = t.splitlines()
    assert lines[0] == "| x | y | z | w |"
    assert lines[2] == "|  |  | a\\|b |  |"
    assert lines[3] == "|  |  |  | 2 |"
    assert markdown_table([]) == ""
