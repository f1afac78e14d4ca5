"""The BM-MLL source: class folders, range folders, inner folder."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from ssl_cyto.data.sources.bm_mll import BmMllSource
from ssl_cyto.data.synth import layout_classes, synthesize


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
