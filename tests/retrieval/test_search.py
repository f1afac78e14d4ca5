"""``query`` and ``ssl-cyto query`` over a small embedded, indexed folder (CPU, tiny_cnn)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssl_cyto.cli import main as cli_main
from ssl_cyto.retrieval import index_io as rindex


@pytest.fixture(scope="module")
def indexed(synth_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssl_cyto.embedding import embed

    out = embed("tiny_cnn", synth_folder, tmp_path_factory.mktemp("q") / "emb", batch_size=16, progress=False)
    rindex.build_index(out, "flat", progress=False)
    return out


def run_query_cli(argv: list[str]) -> int:
    return cli_main(["query", *argv])


def test_query_json_schema(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = pd.read_parquet(indexed / "cells.parquet")
    image = str(Path(cells["root"].iloc[3]) / cells["path"].iloc[3])
    cell = cells["cell_id"].iloc[7]
    assert run_query_cli([image, "--index", str(indexed), "-k", "4", "--cell-id", cell, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [q["query"] for q in out] == [image, cell]
    for q in out:
        assert set(q) == {"query", "neighbours"} and len(q["neighbours"]) == 4
        for i, n in enumerate(q["neighbours"]):
            assert set(n) == {"rank", "cell_id", "path", "label", "similarity"}
            assert n["rank"] == i + 1 and isinstance(n["similarity"], float) and Path(n["path"]).exists()
        sims = [n["similarity"] for n in q["neighbours"]]
        assert sims == sorted(sims, reverse=True)
    # an indexed image finds itself first (similarity 1); a cell-id query excludes itself
    assert out[0]["neighbours"][0]["cell_id"] == cells["cell_id"].iloc[3]
    assert out[0]["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert cell not in [n["cell_id"] for n in out[1]["neighbours"]]
    assert out[1]["neighbours"][0]["label"] in set(cells["label"])


def test_query_table_and_gallery(indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from ssl_cyto.retrieval.search import query

    ids = pd.read_parquet(indexed / "cells.parquet")["cell_id"].tolist()[:3]
    png = tmp_path / "g.png"
    argv = ["--index", str(indexed), "-k", "5", "--gallery", str(png)]
    for c in ids:
        argv += ["--cell-id", c]
    assert run_query_cli(argv) == 0
    text = capsys.readouterr().out
    assert text.count("query: ") == 3 and "similarity" in text
    w, h = Image.open(png).size
    assert w > h > 0  # 3 rows of 1 + 5 tiles
    results = query(index=indexed, cell_ids=ids[:1], k=2, gallery=tmp_path / "one.png")
    assert len(results) == 1 and (tmp_path / "one.png").exists()


def test_query_refuses_another_model(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssl_cyto.retrieval.search import ModelMismatchError, query

    cells = pd.read_parquet(indexed / "cells.parquet")
    image = Path(cells["root"].iloc[0]) / cells["path"].iloc[0]
    with pytest.raises(ModelMismatchError, match="not the model of this index"):
        query([image], indexed, model="tiny_cnn", seed=1)
    # the same random model by name and seed is the index's model: accepted
    assert query([image], indexed, model="tiny_cnn", seed=0, k=1)[0]["neighbours"][0]["similarity"] > 0.999
    assert run_query_cli([str(image), "--index", str(indexed), "--model", "tiny_cnn", "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "not the model of this index" in err and "Traceback" not in err
    assert run_query_cli(["--index", str(indexed), "--cell-id", "folder:x/nope.png"]) == 2
    assert "not in" in capsys.readouterr().err
    assert run_query_cli(["--index", str(indexed)]) == 2


def test_query_finds_the_folder_from_a_moved_index(indexed: Path, tmp_path: Path) -> None:
    """An index file elsewhere finds its embedding folder through ``emb_dir`` in index.json."""
    from ssl_cyto.retrieval.search import query

    out = rindex.build_index(indexed, "flat", out=tmp_path / "elsewhere.faiss", progress=False)
    cell = pd.read_parquet(indexed / "cells.parquet")["cell_id"].iloc[0]
    assert len(query(index=out, cell_ids=[cell], k=3)[0]["neighbours"]) == 3
