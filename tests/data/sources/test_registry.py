"""The source registry: detection, opening by kind, kind parsing, registration rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_cyto.data.sources import (
    SOURCES,
    SourceError,
    SourceNotFoundError,
    detect_source,
    open_source,
    parse_kind,
    register_source,
    source_class,
)
from ssl_cyto.data.sources.folder import FolderSource


def test_detect_and_open(synth_aml: Path, synth_bm: Path, synth_folder: Path) -> None:
    assert detect_source(synth_aml) == "aml-lmu"
    assert detect_source(synth_aml / "AML-Cytomorphology") == "aml-lmu"
    assert detect_source(synth_bm) == "bm-mll"
    assert detect_source(synth_bm / "BM_cytomorphology_data") == "bm-mll"
    assert detect_source(synth_folder) == "folder"
    assert isinstance(open_source("folder:x", synth_folder), FolderSource)
    assert open_source("folder:x", synth_folder).name == "folder:x"
    with pytest.raises(SourceError, match="unknown source kind"):
        open_source("pbc", synth_folder)
    with pytest.raises(SourceNotFoundError, match="no such folder"):
        open_source("bm-mll", synth_folder / "nope")
    with pytest.raises(SourceError, match="BM_cytomorphology_data"):
        open_source("bm-mll", synth_folder)


def test_detect_by_side_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "annotations.dat").write_text("x.tiff A\n")
    (tmp_path / "b" / "inner").mkdir(parents=True)
    (tmp_path / "b" / "abbreviations.csv").write_text("ABE,Abnormal eosinophil\n")
    assert detect_source(tmp_path / "a") == "aml-lmu"
    assert detect_source(tmp_path / "b" / "inner") == "bm-mll"  # beside it
    assert detect_source(tmp_path) == "folder"
    with pytest.raises(SourceNotFoundError):
        detect_source(tmp_path / "none")


def test_parse_kind_and_registration_rules() -> None:
    assert parse_kind("folder:pbc") == ("folder", "pbc")
    assert parse_kind("bm-mll") == ("bm-mll", None)
    with pytest.raises(SourceError, match="only folder sources take a name"):
        parse_kind("aml-lmu:x")
    assert source_class("folder") is FolderSource
    assert list(SOURCES) == ["aml-lmu", "bm-mll", "folder"]
    assert all(":" in target for target in SOURCES.values())
    with pytest.raises(SourceError, match="already registered"):
        register_source("folder", FolderSource)
    with pytest.raises(SourceError, match="plain name"):
        register_source("a:b", FolderSource)
