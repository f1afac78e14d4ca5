"""``ssl-cyto data scan``: the catalog it writes, the problems it prints, bad input as exit 2."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from ssl_cyto.cli import main
from ssl_cyto.formats.catalog import read_catalog


def _cli(argv: list[str]) -> int:
    return main(["data", "scan", *argv])


def test_scan_cli_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli(["pbc=/x", "--out", str(tmp_path / "c.parquet")]) == 2
    assert "unknown source kind" in capsys.readouterr().err
    assert _cli([f"folder={tmp_path / 'missing'}", "--out", str(tmp_path / "c.parquet")]) == 2


def test_scan_cli_pbc(pbc_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "c.parquet"
    assert _cli([f"folder={pbc_root}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "problems: 0" in printed
    df = read_catalog(out)
    assert len(df) == 4800
    assert df.groupby("label").size().to_dict() == {
        c: 600
        for c in [
            "basophil",
            "eosinophil",
            "erythroblast",
            "ig",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ]
    }
    assert set(df["source"]) == {"folder:pbc_subset"} or len(set(df["source"])) == 1
    with open(pbc_root / "manifest.csv", newline="") as fh:
        manifest = {row["path"]: row["sha256"] for row in csv.DictReader(fh)}
    assert dict(zip(df["path"], df["sha256"], strict=True)) == manifest


def test_scan_cli_reports_changed_file(pbc_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "pbc_copy"
    keep = ["basophil", "platelet"]
    for cls in keep:
        shutil.copytree(pbc_root / cls, root / cls)
    with (
        open(pbc_root / "manifest.csv", newline="") as fh,
        open(root / "manifest.csv", "w", newline="") as out,
    ):
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            if row["label"] in keep:
                writer.writerow(row)
    victim = sorted((root / "platelet").iterdir())[3]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    problems = tmp_path / "problems.txt"
    assert (
        _cli([f"folder:copy={root}", "--out", str(tmp_path / "c.parquet"), "--problems", str(problems)]) == 0
    )
    printed = capsys.readouterr().out
    assert "problems: 1" in printed
    rel = f"platelet/{victim.name}"
    assert rel in printed
    assert problems.read_text().strip() == f"folder:copy\tchanged (sha256 differs from manifest.csv): {rel}"
    # without verification nothing is hashed, nothing reported
    assert _cli([f"folder:copy={root}", "--out", str(tmp_path / "d.parquet"), "--no-verify"]) == 0
    assert "problems: 0" in capsys.readouterr().out
    assert read_catalog(tmp_path / "d.parquet")["sha256"].isna().all()


def test_scan_hash_all(synth_bm: Path, tmp_path: Path) -> None:
    assert _cli([f"bm-mll={synth_bm}", "--out", str(tmp_path / "c.parquet"), "--hash"]) == 0
    df = read_catalog(tmp_path / "c.parquet")
    assert df["sha256"].notna().all() and df["sha256"].str.len().eq(64).all()
