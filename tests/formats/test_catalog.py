"""catalog.parquet: exact columns, typed nulls, Parquet round trip, clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.formats.catalog import (
    CATALOG_COLUMNS,
    CatalogError,
    catalog_frame,
    catalog_rows,
    read_catalog,
    write_catalog,
)
from ssl_cyto.formats.errors import MissingInputError


def _rows() -> list[dict]:
    return [
        {"cell_id": "a/x.png", "source": "a", "path": "x.png", "root": "/r", "label": "L", "um_per_px": 0.1},
        {
            "cell_id": "a/y.png",
            "source": "a",
            "path": "y.png",
            "root": "/r",
            "label": None,
            "sha256": "f" * 64,
        },
    ]


def test_frame_round_trip_keeps_columns_nulls_and_dtypes(tmp_path: Path) -> None:
    df = catalog_frame(_rows())
    assert list(df.columns) == CATALOG_COLUMNS
    assert df["um_per_px"].dtype == "float64"
    assert df["label"].tolist() == ["L", None] and df["reannot1"].tolist() == [None, None]
    back = read_catalog(write_catalog(df, tmp_path / "sub" / "c.parquet"))
    assert list(back.columns) == CATALOG_COLUMNS
    assert back["um_per_px"].dtype == "float64" and np.isnan(back["um_per_px"][1])
    assert back["label"].tolist() == ["L", None]
    assert back["sha256"].tolist() == [None, "f" * 64]
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_bad_catalogs(tmp_path: Path) -> None:
    pd.DataFrame({"cell_id": ["a"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(CatalogError, match="lacks columns"):
        read_catalog(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="ssl-cyto data scan"):
        read_catalog(tmp_path / "missing.parquet")
    with pytest.raises(MissingInputError):
        read_catalog(tmp_path / "missing.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(CatalogError, match="cannot read as Parquet"):
        read_catalog(tmp_path / "text.parquet")
    with pytest.raises(CatalogError, match="lacks columns"):
        write_catalog(pd.DataFrame({"cell_id": ["a"]}), tmp_path / "w.parquet")


def test_catalog_rows_are_json_ready() -> None:
    df = catalog_frame(_rows())
    df["extra"] = [np.int64(3), pd.NA]
    rows = catalog_rows(df)
    assert list(rows[0]) == CATALOG_COLUMNS + ["extra"]
    assert rows[0]["um_per_px"] == 0.1 and rows[1]["um_per_px"] is None
    assert rows[0]["extra"] == 3 and type(rows[0]["extra"]) is int and rows[1]["extra"] is None
    assert catalog_rows(pd.DataFrame({"cell_id": ["z"]}))[0]["label"] is None
