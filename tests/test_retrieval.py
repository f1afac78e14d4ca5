"""FAISS index build/load/search, the gallery, and the query command (CPU, small data)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ssl_cyto.data.catalog import CATALOG_COLUMNS
from ssl_cyto.retrieval import index as rindex
from ssl_cyto.retrieval.gallery import Tile, render_gallery, save_gallery


def clustered(n: int, dim: int, n_clusters: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    x = centres[labels] + 0.5 * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def write_emb_dir(out: Path, x: np.ndarray, labels: np.ndarray, sha: str = "a" * 64) -> Path:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", x)
    rows = [
        {
            "cell_id": f"folder:t/c{lab}/{i:05d}.png",
            "source": "folder:t",
            "path": f"c{lab}/{i:05d}.png",
            "root": str(out / "images"),
            "label": f"c{lab}",
            "reannot1": None,
            "reannot2": None,
            "um_per_px": None,
            "sha256": None,
        }
        for i, lab in enumerate(labels)
    ]
    pd.DataFrame(rows, columns=CATALOG_COLUMNS).to_parquet(out / "cells.parquet", index=False)
    (out / "model.json").write_text(json.dumps({"architecture": "test", "weights_sha256": sha}))
    return out


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn @ xn.T
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


def test_flat_matches_numpy_brute_force(tmp_path: Path) -> None:
    x, labels = clustered(500, 24)
    q = x[:40] + 0.1 * np.random.default_rng(1).normal(size=(40, 24)).astype(np.float32)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    path = rindex.build_index(emb, "flat", progress=False)
    index, meta = rindex.load_index(emb)
    sims, ids = rindex.search(index, q, 10)
    ref_sims, ref_ids = brute_force(x, q, 10)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    # ids equal except where two database vectors tie in similarity (none expected here)
    assert (ids == ref_ids).all()
    assert path == emb / "index.faiss" and (emb / "index.json").exists()
    assert meta["kind"] == "flat" and meta["metric"] == "cosine"
    assert meta["n"] == 500 and meta["dim"] == 24 and meta["weights_sha256"] == "a" * 64


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "ivfpq"])
def test_approximate_kinds_recall(tmp_path: Path, kind: str) -> None:
    x, labels = clustered(3000, 32)
    rng = np.random.default_rng(2)
    q = x[rng.choice(3000, 100, replace=False)] + 0.05 * rng.normal(size=(100, 32)).astype(np.float32)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    rindex.build_index(emb, kind, progress=False)
    index, meta = rindex.load_index(emb)
    assert meta["kind"] == kind and meta["params"]
    _, ids = rindex.search(index, q, 10)
    _, ref = brute_force(x, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref, strict=True)])
    assert recall >= 0.9, f"{kind}: recall@10 {recall:.3f}"


def test_ivf_nprobe_override_changes_search(tmp_path: Path) -> None:
    x, labels = clustered(3000, 16)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    rindex.build_index(emb, "ivf", nlist=40, nprobe=40, progress=False)
    full, _ = rindex.load_index(emb)
    one, _ = rindex.load_index(emb, nprobe=1)
    q = np.random.default_rng(3).normal(size=(200, 16)).astype(np.float32)
    _, ref = brute_force(x, q, 10)
    _, a = rindex.search(full, q, 10)
    _, b = rindex.search(one, q, 10)
    assert (a == ref).mean() > 0.99  # nprobe = nlist is exhaustive
    assert (b == ref).mean() < (a == ref).mean()


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    x, labels = clustered(50, 8)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    with pytest.raises(rindex.RetrievalError, match="GPU|gpu"):
        rindex.build_index(emb, "flat", gpu=True)
    with pytest.raises(rindex.RetrievalError, match="do not apply"):
        rindex.build_index(emb, "flat", nlist=4)
    with pytest.raises(rindex.RetrievalError, match="must divide"):
        rindex.build_index(emb, "ivfpq", pq_m=3)
    with pytest.raises(rindex.RetrievalError, match="index build"):
        rindex.load_index(emb)
    np.save(emb / "embeddings.npy", x[:10])
    with pytest.raises(rindex.RetrievalError, match="cells.parquet has 50"):
        rindex.build_index(emb)
    x_bad = x.copy()
    x_bad[3, 0] = np.nan
    np.save(emb / "embeddings.npy", x_bad)
    with pytest.raises(rindex.RetrievalError, match="row 3"):
        rindex.build_index(emb)


def test_index_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, labels = clustered(400, 8)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    parser = argparse.ArgumentParser()
    rindex.add_arguments(parser)
    assert rindex.main(parser.parse_args([str(emb), "--kind", "hnsw", "--m", "8", "--ef-search", "32"])) == 0
    meta = json.loads((emb / "index.json").read_text())
    assert meta["params"]["m"] == 8 and meta["params"]["ef_search"] == 32
    assert rindex.main(parser.parse_args([str(tmp_path / "nope")])) == 2
    assert "embeddings.npy not found" in capsys.readouterr().err


def test_gallery_tile_count_and_size(tmp_path: Path) -> None:
    from PIL import Image

    img = Image.new("RGB", (40, 30), (200, 120, 180))
    rows = [
        (Tile(img, "query\nA", "#1f5fbf"), [Tile(img, f"#{j + 1} A\nsim 0.9") for j in range(4)]),
        (Tile(img, "query\nB"), [Tile(tmp_path / "missing.png", "#1 ?")] + [Tile(img, "x")] * 2),
    ]
    fig = render_gallery(rows, tile_inches=1.0, dpi=50)
    assert len(fig.axes) == (1 + 4) + (1 + 3)
    out = save_gallery(rows, tmp_path / "g.png", tile_inches=1.0, dpi=50)
    w, h = Image.open(out).size
    assert w == round(1.0 * (5 + 0.25) * 50) and h > 2 * 50


# ------------------------------------------------------------------------------------------ query
@pytest.fixture(scope="module")
def indexed(synth_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssl_cyto.embed import embed

    out = embed("tiny_cnn", synth_folder, tmp_path_factory.mktemp("q") / "emb", batch_size=16, progress=False)
    rindex.build_index(out, "flat", progress=False)
    return out


def run_query_cli(argv: list[str]) -> int:
    from ssl_cyto.retrieval import query as rquery

    parser = argparse.ArgumentParser()
    rquery.add_arguments(parser)
    return rquery.main(parser.parse_args(argv))


def test_query_json_schema(indexed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

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
    import pandas as pd
    from PIL import Image

    from ssl_cyto.retrieval.query import query

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
    import pandas as pd

    from ssl_cyto.retrieval.query import ModelMismatchError, query

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
