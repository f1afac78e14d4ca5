"""``ssl-cyto pack``: packing from a catalog file, --verify, and bad input as exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssl_cyto.cli import main
from ssl_cyto.cli import pack as pack_cli
from ssl_cyto.data.packing import pack
from ssl_cyto.formats.catalog import write_catalog
from tests.data.packing_support import two_layout_catalog_fixture  # noqa: F401 - fixture


def run_cli(argv: list[str]) -> int:
    """``ssl-cyto pack ARGV`` through the dispatcher (errors -> one line, exit 2)."""
    return main(["pack", *argv])


def test_resume_hint() -> None:
    assert pack_cli.RESUME_HINT == "rerun the same command to resume the pack"


def test_cli_verify(two_layout_catalog: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "v"
    pack(two_layout_catalog.head(8), out, shard_size=4, progress=False)
    assert run_cli(["--verify", str(out), "--quiet"]) == 0
    assert "2 shard(s), 8 cells verified" in capsys.readouterr().out
    (out / "cells-000001.tar").unlink()
    # exit statuses of issue 10: a verify that finds problems is bad input (2; it used to be 1)
    assert run_cli(["--verify", str(out), "--quiet"]) == 2
    assert "cells-000001.tar: missing" in capsys.readouterr().err
    assert run_cli(["--verify", str(tmp_path / "none"), "--quiet"]) == 2
    assert "no index.json" in capsys.readouterr().err
    assert run_cli(["--quiet"]) == 2
    assert "give --catalog and --out" in capsys.readouterr().err


def test_cli_pack_from_parquet_and_errors(two_layout_catalog: pd.DataFrame, tmp_path: Path, capsys) -> None:
    cat_path = write_catalog(two_layout_catalog.head(10), tmp_path / "catalog.parquet")
    out = tmp_path / "cli"
    assert run_cli(["--catalog", str(cat_path), "--out", str(out), "--shard-size", "4", "--quiet"]) == 0
    assert "packed 10 cells into 3 shard(s)" in capsys.readouterr().out
    index = json.loads((out / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [4, 4, 2]
    assert run_cli(["--catalog", str(cat_path), "--out", str(out), "--shard-size", "5", "--quiet"]) == 2
    assert "other options" in capsys.readouterr().err
    assert run_cli(["--catalog", str(tmp_path / "nope.parquet"), "--out", str(out)]) == 2
    assert run_cli(["--catalog", str(cat_path), "--out", str(tmp_path / "x"), "--um-per-px", "bad"]) == 2
    assert "SOURCE=X" in capsys.readouterr().err
