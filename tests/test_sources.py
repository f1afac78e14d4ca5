"""The three sources against generated fixtures in the real layouts (and hand-made edge cases)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from ssl_cyto.data.sources import (
    AML_LMU_UM_PER_PX,
    AmlLmuSource,
    BmMllSource,
    FolderSource,
    SourceError,
    SourceNotFoundError,
    detect_source,
    open_source,
    sha256_file,
)
from ssl_cyto.data.synth import layout_classes, synthesize


def test_aml_reads_labels_from_annotations(synth_aml: Path) -> None:
    src = AmlLmuSource(synth_aml)
    recs = list(src.records())
    assert src.problems == []
    assert len(recs) == 4 * 15
    assert Counter(r.label for r in recs) == {c: 4 for c in layout_classes("aml-lmu")}
    r = recs[0]
    assert r.source == "aml-lmu"
    assert r.path.startswith("AML-Cytomorphology/") and r.path.endswith(".tiff")
    assert r.cell_id == f"aml-lmu/{r.path}"
    assert (Path(r.root) / r.path).is_file()
    assert r.um_per_px == pytest.approx(AML_LMU_UM_PER_PX)
    # gold label matches the class folder in the generated data; some cells are re-annotated
    assert all(rec.label == rec.path.split("/")[1] for rec in recs)
    re = [rec for rec in recs if rec.reannot1 is not None or rec.reannot2 is not None]
    assert 0 < len(re) < len(recs)
    assert any("UNC" in (rec.reannot1, rec.reannot2) for rec in re)


def test_aml_inner_folder_gives_same_ids(synth_aml: Path) -> None:
    outer = [r.cell_id for r in AmlLmuSource(synth_aml).records()]
    inner = [r.cell_id for r in AmlLmuSource(synth_aml / "AML-Cytomorphology").records()]
    assert outer == inner


def _mini_aml(tmp_path: Path, synth_aml: Path) -> Path:
    root = tmp_path / "AML-Cytomorphology_LMU"
    for rel in ["NGS/NGS_0001.tiff", "NGS/NGS_0002.tiff", "LYT/LYT_0001.tiff", "LYT/LYT_0002.tiff"]:
        dst = root / "AML-Cytomorphology" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_aml / "AML-Cytomorphology" / rel, dst)
    return root


def test_aml_annotations_nan_unc_missing_unlisted(tmp_path: Path, synth_aml: Path) -> None:
    root = _mini_aml(tmp_path, synth_aml)
    # with and without the folder prefix; nan, UNC; one listed file missing; LYT_0002 unlisted
    (root / "annotations.dat").write_text(
        "AML-Cytomorphology/NGS/NGS_0001.tiff NGS NGS UNC\n"
        "NGS/NGS_0002.tiff NGB nan nan\n"
        "LYT/LYT_0001.tiff LYT LYA LYT\n"
        "AML-Cytomorphology/MON/MON_0009.tiff MON nan nan\n"
        "this line is broken with too many fields\n"
    )
    src = AmlLmuSource(root)
    recs = {r.path: r for r in src.records()}
    assert set(recs) == {
        "AML-Cytomorphology/LYT/LYT_0001.tiff",
        "AML-Cytomorphology/LYT/LYT_0002.tiff",
        "AML-Cytomorphology/NGS/NGS_0001.tiff",
        "AML-Cytomorphology/NGS/NGS_0002.tiff",
    }
    ngs1 = recs["AML-Cytomorphology/NGS/NGS_0001.tiff"]
    assert (ngs1.label, ngs1.reannot1, ngs1.reannot2) == ("NGS", "NGS", "UNC")
    ngs2 = recs["AML-Cytomorphology/NGS/NGS_0002.tiff"]
    assert (ngs2.label, ngs2.reannot1, ngs2.reannot2) == (
        "NGB",
        None,
        None,
    )  # label from the file, not the folder
    assert recs["AML-Cytomorphology/LYT/LYT_0002.tiff"].label is None
    text = "\n".join(src.problems)
    assert len(src.problems) == 3
    assert "not in annotations.dat" in text and "LYT/LYT_0002.tiff" in text
    assert "missing" in text and "MON/MON_0009.tiff" in text
    assert "annotations.dat:5" in text


def test_aml_without_annotations_is_a_clear_error(tmp_path: Path, synth_aml: Path) -> None:
    root = _mini_aml(tmp_path, synth_aml)
    with pytest.raises(SourceNotFoundError, match="annotations.dat"):
        AmlLmuSource(root)


def test_bm_reads_class_folders(synth_bm: Path) -> None:
    src = BmMllSource(synth_bm)
    recs = list(src.records())
    assert src.problems == []
    assert Counter(r.label for r in recs) == {c: 4 for c in layout_classes("bm-mll")}
    assert all(r.path.startswith("BM_cytomorphology_data/") and r.path.endswith(".jpg") for r in recs)
    assert all(r.um_per_px is None for r in recs)
    inner = [r.cell_id for r in BmMllSource(synth_bm / "BM_cytomorphology_data").records()]
    assert inner == [r.cell_id for r in recs]


def test_bm_range_folder_walk(tmp_path: Path) -> None:
    root = synthesize(
        tmp_path / "bm", "bm-mll", per_class=7, seed=1, size=32, range_size=3, classes=["NGB", "ABE"]
    )
    folders = sorted(p.name for p in (root / "BM_cytomorphology_data" / "NGB").iterdir())
    assert folders == ["0001-0003", "0004-0006", "0007-0007"]
    assert (root / "BM_cytomorphology_data/NGB/0004-0006/NGB_00005.jpg").is_file()
    src = BmMllSource(root)
    recs = list(src.records())
    assert src.problems == []
    assert Counter(r.label for r in recs) == {"NGB": 7, "ABE": 7}
    # a file moved into the wrong range folder is reported by name
    shutil.move(
        root / "BM_cytomorphology_data/NGB/0001-0003/NGB_00001.jpg",
        root / "BM_cytomorphology_data/NGB/0004-0006/NGB_00001.jpg",
    )
    src = BmMllSource(root)
    assert len(list(src.records())) == 14
    assert len(src.problems) == 1 and "NGB_00001.jpg" in src.problems[0]


def test_folder_source_and_manifest(synth_folder: Path) -> None:
    src = FolderSource(synth_folder)
    recs = list(src.records())
    assert src.problems == []
    assert src.name == f"folder:{synth_folder.name}"
    assert Counter(r.label for r in recs) == {c: 6 for c in layout_classes("folder")}
    r = recs[0]
    assert r.sha256 == sha256_file(Path(r.root) / r.path)
    named = FolderSource(synth_folder, name="mine", verify=False)
    recs2 = list(named.records())
    assert recs2[0].cell_id.startswith("folder:mine/") and recs2[0].sha256 is None


def test_folder_manifest_problems(tmp_path: Path, synth_folder: Path) -> None:
    root = tmp_path / "f"
    shutil.copytree(synth_folder, root)
    (root / "lymphocyte" / "lymphocyte_0002.png").write_bytes(b"changed")
    (root / "monocyte" / "monocyte_0003.png").unlink()
    shutil.copy(root / "basophil" / "basophil_0001.png", root / "basophil" / "extra.png")
    src = FolderSource(root)
    recs = list(src.records())
    assert len(recs) == 30  # 30 - 1 missing + 1 extra
    text = "\n".join(src.problems)
    assert len(src.problems) == 3, text
    assert "changed" in text and "lymphocyte/lymphocyte_0002.png" in text
    assert "missing: monocyte/monocyte_0003.png" in text
    assert "not in manifest.csv: basophil/extra.png" in text
    fast = FolderSource(root, verify=False)
    list(fast.records())
    assert not any("changed" in p for p in fast.problems)


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
