"""Scanning sources: exact columns, unique and stable ids, duplicates refused, catalog_from_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_cyto.data.scanning import catalog_from_path, counts_table, parse_spec, scan
from ssl_cyto.data.sources import SourceError
from ssl_cyto.formats.catalog import CATALOG_COLUMNS, CatalogError, read_catalog, write_catalog


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
    table = counts_table(df)
    assert "folder:gen" in table and table.splitlines()[-1].split()[-1] == str(len(df))


def test_catalog_from_path(synth_bm: Path, tmp_path: Path) -> None:
    df = catalog_from_path(synth_bm)
    assert len(df) == 84
    write_catalog(df, tmp_path / "x.parquet")
    assert catalog_from_path(tmp_path / "x.parquet")["cell_id"].tolist() == df["cell_id"].tolist()
    with pytest.raises(FileNotFoundError):
        catalog_from_path(tmp_path / "nothing")


def test_duplicates_are_refused(synth_folder: Path) -> None:
    with pytest.raises(CatalogError, match="given twice"):
        scan([("folder", str(synth_folder)), ("folder", str(synth_folder))])


def test_parse_spec() -> None:
    assert parse_spec("folder:pbc=/data/pbc") == ("folder:pbc", "/data/pbc")
    with pytest.raises(SourceError, match="expected SOURCE=PATH"):
        parse_spec("aml-lmu")
    with pytest.raises(SourceError, match="unknown source kind"):
        parse_spec("pbc=/x")
