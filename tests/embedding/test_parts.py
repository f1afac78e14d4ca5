"""``embed --part I/N`` + ``--merge``: the parts of one run merge into the rows, order and vectors of a
single run (generated cells, tiny_cnn); folders that are not the parts of one run are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.cli import main as cli_main
from ssl_cyto.embedding import EmbedError, embed
from ssl_cyto.embedding.parts import merge_parts, parse_part


def test_three_parts_merge_into_the_single_run(synth_folder: Path, tmp_path: Path) -> None:
    single = embed("tiny_cnn", synth_folder, tmp_path / "single", batch_size=8, progress=False, device="cpu")
    parts = []
    for i in (1, 2, 3):
        out = tmp_path / f"part{i}"
        argv = ["embed", "--model", "tiny_cnn", "--data", str(synth_folder), "--out", str(out)]
        assert cli_main([*argv, "--part", f"{i}/3", "--batch-size", "8", "--device", "cpu"]) == 0
        parts.append(out)
    assert json.loads((parts[1] / "embed.json").read_text())["part"] == [2, 3]
    merged = tmp_path / "merged"
    assert cli_main(["embed", "--merge", *map(str, reversed(parts)), "--out", str(merged)]) == 0
    a, b = pd.read_parquet(single / "cells.parquet"), pd.read_parquet(merged / "cells.parquet")
    assert a["cell_id"].tolist() == b["cell_id"].tolist()
    np.testing.assert_allclose(
        np.load(merged / "embeddings.npy"), np.load(single / "embeddings.npy"), atol=1e-6
    )
    info = json.loads((merged / "embed.json").read_text())
    assert info["counts"]["cells"] == len(a) and "part" not in info and len(info["merged_from"]) == 3
    ha, hb = (pd.read_parquet(d / "image_hashes.parquet").sort_values("cell_id") for d in (single, merged))
    assert hb["cell_id"].tolist() == a["cell_id"].tolist() and hb["hash"].tolist() == ha["hash"].tolist()
    with pytest.raises(EmbedError, match="need each of 1..3 once"):
        merge_parts(parts[:2], tmp_path / "bad")
    with pytest.raises(EmbedError, match="expected I/N"):
        parse_part("3")
