"""The generic ImageFolder source and its manifest.csv checks."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from ssl_cyto.data.sources.folder import FolderSource
from ssl_cyto.data.synth import layout_classes
from ssl_cyto.formats.hashing import sha256_file


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
