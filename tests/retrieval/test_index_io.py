"""FAISS index build/load/search and ``ssl-cyto index build`` (CPU, small data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssl_cyto.cli import main as cli_main
from ssl_cyto.retrieval import index_io as rindex
from tests.retrieval.helpers import brute_force, clustered, write_emb_dir


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
    assert path == emb / "index.faiss" and (emb / "index.faiss.json").exists()
    assert not (emb / "index.json").exists()  # the name of the shard index: no longer used here
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
    np.save(emb / "embeddings.npy", x)
    (emb / "model.json").unlink()
    with pytest.raises(rindex.RetrievalError, match="model.json not found"):
        rindex.build_index(emb)


def test_index_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, labels = clustered(400, 8)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    assert cli_main(["index", "build", str(emb), "--kind", "hnsw", "--m", "8", "--ef-search", "32"]) == 0
    meta = json.loads((emb / "index.faiss.json").read_text())
    assert meta["params"]["m"] == 8 and meta["params"]["ef_search"] == 32
    assert cli_main(["index", "build", str(tmp_path / "nope")]) == 2
    assert "embeddings.npy not found" in capsys.readouterr().err


def test_an_index_with_the_former_metadata_name_is_still_read(tmp_path: Path) -> None:
    x, labels = clustered(300, 8)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    rindex.build_index(emb, "flat", progress=False)
    (emb / "index.faiss.json").rename(emb / "index.json")  # as built before the rename
    index, meta = rindex.load_index(emb)
    assert index.ntotal == 300 and meta["kind"] == "flat"
    assert rindex.read_index_meta(emb / "index.json")["n"] == 300
    rindex.build_index(emb, "flat", progress=False)  # a rebuild writes the new name, drops the old
    assert (emb / "index.faiss.json").exists() and not (emb / "index.json").exists()
