"""Generated cells: real layouts and formats, read back by the real sources, deterministic per seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_cyto.data.images import open_rgb
from ssl_cyto.data.sources.aml_lmu import AmlLmuSource
from ssl_cyto.data.sources.bm_mll import BmMllSource
from ssl_cyto.data.sources.folder import FolderSource
from ssl_cyto.data.synth import (
    MORPHS,
    SynthError,
    ensure_cached,
    generate_arrays,
    layout_classes,
    range_folder,
    synthesize,
)
from ssl_cyto.data.vocabulary import AML_LMU_CLASSES, BM_MLL_CLASSES


def test_every_class_has_a_morphology() -> None:
    assert set(AML_LMU_CLASSES) | set(BM_MLL_CLASSES) <= set(MORPHS)


def test_aml_layout_and_format(synth_aml: Path) -> None:
    files = sorted((synth_aml / "AML-Cytomorphology").glob("*/*.tiff"))
    assert len(files) == 60
    assert files[0].relative_to(synth_aml).as_posix() == "AML-Cytomorphology/BAS/BAS_0001.tiff"
    with Image.open(files[0]) as im:
        assert im.mode == "RGBA" and im.size == (400, 400)
        alpha = np.asarray(im)[..., 3]
    assert alpha.max() == 255 and alpha.min() < 255  # opaque cell, soft background
    assert alpha[200, 200] == 255
    assert open_rgb(files[0]).size == (400, 400)
    abbreviations = (synth_aml / "abbreviations.txt").read_text().splitlines()
    assert len(abbreviations) == 15 and abbreviations[0].split("\t") == ["BAS", "Basophil"]
    lines = [ln.split() for ln in (synth_aml / "annotations.dat").read_text().splitlines()]
    assert len(lines) == 60 and all(len(p) == 4 for p in lines)
    re = [p for p in lines if p[2] != "nan"]
    assert 5 <= len(re) < 60
    assert any("UNC" in p[2:] for p in re)
    assert any(p[2] not in (p[1], "UNC") for p in re)  # at least one disagreement


def test_synth_read_back_by_real_sources(synth_aml: Path, synth_bm: Path, synth_folder: Path) -> None:
    aml = AmlLmuSource(synth_aml)
    assert Counter(r.label for r in aml.records()) == {c: 4 for c in AML_LMU_CLASSES}
    assert aml.problems == []
    bm = BmMllSource(synth_bm)
    assert Counter(r.label for r in bm.records()) == {c: 4 for c in BM_MLL_CLASSES}
    assert bm.problems == []
    folder = FolderSource(synth_folder)
    assert Counter(r.label for r in folder.records()) == {c: 6 for c in layout_classes("folder")}
    assert folder.problems == []


def test_bm_format_and_range_folders(synth_bm: Path, tmp_path: Path) -> None:
    f = synth_bm / "BM_cytomorphology_data" / "NGB" / "NGB_00001.jpg"  # 4 cells < 1000: flat
    with Image.open(f) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (250, 250)
    assert (synth_bm / "abbreviations.csv").read_text().splitlines()[:2] == [
        "Abbreviation;Meaning",
        "ABE;Abnormal eosinophil",
    ]
    assert range_folder(1, 9968) == "0001-1000"
    assert range_folder(9454, 9968) == "9001-9968"
    assert range_folder(9522, 14000) == "9001-10000"
    out = synthesize(tmp_path, "bm-mll", per_class=5, seed=0, size=24, range_size=2, classes=["EOS"])
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert got == [
        "BM_cytomorphology_data/EOS/0001-0002/EOS_00001.jpg",
        "BM_cytomorphology_data/EOS/0001-0002/EOS_00002.jpg",
        "BM_cytomorphology_data/EOS/0003-0004/EOS_00003.jpg",
        "BM_cytomorphology_data/EOS/0003-0004/EOS_00004.jpg",
        "BM_cytomorphology_data/EOS/0005-0005/EOS_00005.jpg",
    ]


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, la = generate_arrays("bm-mll", 3, seed=7, size=48, classes=["NGS", "LYT"])
    b, lb = generate_arrays("bm-mll", 3, seed=7, size=48, classes=["NGS", "LYT"])
    c, _ = generate_arrays("bm-mll", 3, seed=8, size=48, classes=["NGS", "LYT"])
    assert la == lb == ["NGS"] * 3 + ["LYT"] * 3
    assert a.shape == (6, 48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a class's cells do not depend on which other classes are generated
    d, _ = generate_arrays("bm-mll", 3, seed=7, size=48, classes=["LYT"])
    assert np.array_equal(a[3:], d)
    p1 = synthesize(tmp_path / "x", "folder", 2, seed=3, size=32)
    p2 = synthesize(tmp_path / "y", "folder", 2, seed=3, size=32, workers=2)  # same files in parallel
    assert (p1 / "manifest.csv").read_text() == (p2 / "manifest.csv").read_text()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="unknown layout"):
        synthesize(tmp_path, "pbc", 1, 0)
    with pytest.raises(SynthError, match="per_class"):
        synthesize(tmp_path, "folder", 0, 0)
    with pytest.raises(SynthError, match="not in layout"):
        synthesize(tmp_path, "aml-lmu", 1, 0, classes=["XYZ"])


def test_ensure_cached_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CYTO_CACHE", str(tmp_path / "cache"))
    p = ensure_cached("folder", per_class=2, seed=1)
    assert p == tmp_path / "cache" / "synth" / "folder-2-1"
    assert (p / "manifest.csv").is_file()
    stamp = (p / "manifest.csv").stat().st_mtime_ns
    assert ensure_cached("folder", per_class=2, seed=1) == p
    assert (p / "manifest.csv").stat().st_mtime_ns == stamp
