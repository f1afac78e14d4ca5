"""The catalog: exact columns, unique and stable ids, Parquet round trip, the scan CLI on real PBC cells."""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import pytest

from ssl_cyto.data import catalog as catalog_mod
from ssl_cyto.data.catalog import (
    CATALOG_COLUMNS,
    CatalogError,
    catalog_from_path,
    read_catalog,
    scan,
    write_catalog,
)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    catalog_mod.add_arguments(parser)
    return catalog_mod.main(parser.parse_args(argv))


def test_scan_three_sources(synth_aml: Path, synth_bm: Path, synth_folder: Path, tmp_path: Path) -> None:
    specs = [("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm)), ("folder:gen", str(synth_folder))]
    df = scan(specs)
    assert list(df.columns) == CATALOG_COLUMNS
    assert len(df) == 60 + 84 + 30
    assert df["cell_id"].is_unique
    assert set(df["source"]) == {"aml-lmu", "bm-mll", "folder:gen"}
    assert df.attrs["problems"] == {"aml-lmu": [], "bm-mll": [], "folder:gen": []}
    assert (df["cell_id"] == df["source"] + "/" + df["path"]).all()
    # stable: the same ids from a second scan and from the inner folders
    again = scan([("aml-lmu", str(synth_aml / "AML-Cytomorphology")), ("bm-mll", str(synth_bm))])
    assert list(again["cell_id"]) == list(df["cell_id"][:144])
    # round trip keeps columns, nulls and dtypes
    out = write_catalog(df, tmp_path / "c.parquet")
    back = read_catalog(out)
    assert list(back.columns) == CATALOG_COLUMNS
    assert back["um_per_px"].dtype == "float64"
    assert back["um_per_px"].isna().sum() == 84 + 30
    assert back.loc[back.source == "bm-mll", "label"].notna().all()
    assert back.loc[back.source == "aml-lmu", "sha256"].isna().all()
    assert back["label"].tolist() == df["label"].tolist()
    assert back["reannot1"].tolist() == df["reannot1"].tolist()


def test_catalog_from_path(synth_bm: Path, tmp_path: Path) -> None:
    df = catalog_from_path(synth_bm)
    assert len(df) == 84
    write_catalog(df, tmp_path / "x.parquet")
    assert catalog_from_path(tmp_path / "x.parquet")["cell_id"].tolist() == df["cell_id"].tolist()
    with pytest.raises(FileNotFoundError):
        catalog_from_path(tmp_path / "nothing")


def test_duplicates_and_bad_catalogs(synth_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="given twice"):
        scan([("folder", str(synth_folder)), ("folder", str(synth_folder))])
    import pandas as pd

    pd.DataFrame({"cell_id": ["a"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(CatalogError, match="lacks columns"):
        read_catalog(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="ssl-cyto data scan"):
        read_catalog(tmp_path / "missing.parquet")


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
