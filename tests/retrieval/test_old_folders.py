"""An embedding folder and index written by main before format version 2 (tests/fixtures/main_da25d6f)
keeps loading in query, serve and probe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURE = Path(__file__).parents[1] / "fixtures" / "main_da25d6f" / "emb"


@pytest.fixture()
def old(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "emb"))


def test_old_folder_queries_serves_and_probes(old: Path, tmp_path: Path) -> None:
    from ssl_cyto.evaluation.probing import probe
    from ssl_cyto.retrieval.search import query
    from ssl_cyto.serve.state import load_state

    assert "format_version" not in json.loads((old / "model.json").read_text())  # the old form
    cells = json.loads((old / "index.json").read_text())["n"]
    first = query(index=old, cell_ids=["folder:folder-50-0/basophil/basophil_0001.png"], k=3)
    assert len(first[0]["neighbours"]) == 3
    image = tmp_path / "q.png"
    Image.fromarray(np.full((40, 40, 3), 120, dtype=np.uint8)).save(image)
    by_image = query([image], old, k=2, device="cpu")
    assert len(by_image[0]["neighbours"]) == 2
    state = load_state(old, device="cpu", threads=1)
    assert state.n == cells and state.embed(Image.open(image).convert("RGB")).shape == (1, 8)
    res = probe(old, fast=True, baselines="none", min_cells=5, n_boot=20)
    assert Path(res["report"]).is_file()
