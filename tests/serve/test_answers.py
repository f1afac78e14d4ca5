"""Answers with a scale, a name for an indexed cell uploaded, warnings, map positions and timings."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.exact_match import build_matcher
from ssl_cyto.serve.lookups import build_lookups
from ssl_cyto.serve.map_points import map_payload, place_upload
from ssl_cyto.serve.similarity_scale import build_scale
from ssl_cyto.serve.state import ServeState, load_state


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def post(client: TestClient, data: bytes, k: int = 5) -> dict:
    r = client.post(f"/api/query?k={k}", files={"image": ("x.png", data)})
    assert r.status_code == 200, r.text
    return r.json()


def test_an_indexed_cell_uploaded_is_named(client: TestClient, a_cell: tuple[str, Path]) -> None:
    cell_id, path = a_cell
    body = post(client, path.read_bytes())
    match = body["exact_match"]
    assert match["cell_id"] == cell_id and match["label"] == cell_id.split("/")[-2]
    assert match["label_name"] and match["by"] in ("sha256", "phash", "similarity")
    assert "warnings" not in body and "preview" not in body["upload"]  # asked for with preview=true only


def test_a_changed_image_is_not_an_exact_match(client: TestClient, a_cell: tuple[str, Path]) -> None:
    body = post(client, png(ImageOps.mirror(Image.open(a_cell[1]).convert("RGB"))))
    assert "exact_match" not in body and "warnings" not in body
    assert body["scale"]["percentile"] is not None and 0 <= body["scale"]["percentile"] <= 100


def test_cell_queries_have_a_scale_and_no_upload_fields(client: TestClient, a_cell: tuple[str, Path]) -> None:
    r = client.get(f"/api/cells/{quote(a_cell[0], safe='')}/neighbours?k=4")
    body = r.json()
    assert "exact_match" not in body and "warnings" not in body
    scale = body["scale"]
    assert scale["best_similarity"] == body["neighbours"][0]["similarity"]
    assert scale["sample"] > 0 and scale["p1"] <= scale["p50"]
    timing = r.headers["server-timing"]
    assert "search;dur=" in timing and "app;dur=" in timing


@pytest.mark.parametrize(
    ("size", "codes"),
    [
        ((1, 1), {"tiny_image"}),
        ((1000, 3), {"tiny_image", "extreme_aspect"}),
        ((300, 60), {"extreme_aspect"}),
    ],
)
def test_nonsense_uploads_get_warnings(client: TestClient, size: tuple[int, int], codes: set[str]) -> None:
    body = post(client, png(Image.new("RGB", size, (240, 180, 200))))
    assert codes <= {w["code"] for w in body["warnings"]}
    assert all(w["detail"] for w in body["warnings"])
    assert "exact_match" not in body


def test_scale_is_seeded_and_capped(state: ServeState) -> None:
    a, b = build_scale(state, sample=20), build_scale(state, sample=20)
    assert a.sample == 20 and np.array_equal(a.sims, b.sims)
    assert np.all(np.diff(a.sims) >= 0)
    assert a.percentile(float(a.sims[0]) - 1e-3) == 0.0 and a.percentile(1.01) == 100.0
    assert build_scale(state).sample == min(state.n, 2000)


def test_hash_tables_name_a_copy(state: ServeState, a_cell: tuple[str, Path]) -> None:
    data = a_cell[1].read_bytes()
    cells = pd.DataFrame({"sha256": [None, "0" * 64, __import__("hashlib").sha256(data).hexdigest()]})
    matcher = build_matcher(cells)
    img = Image.open(a_cell[1]).convert("RGB")
    assert matcher.by_hash(data, img) == (2, "sha256")
    assert matcher.by_hash(b"other bytes", img) is None
    matcher.phash = {"abcdef0123456789": 1}
    matcher.phash_of = lambda _img: "ABCDEF0123456789"
    assert matcher.by_hash(b"other bytes", img) == (1, "phash")
    assert matcher.by_similarity([(0.999995, 7)]) == (7, "similarity")
    assert matcher.by_similarity([(0.9999, 7)]) is None


@pytest.fixture(scope="module")
def mapped(serve_emb: Path, tmp_path_factory: pytest.TempPathFactory) -> ServeState:
    emb = tmp_path_factory.mktemp("mapped") / "emb"
    shutil.copytree(serve_emb, emb)
    cells = pd.read_parquet(emb / "cells.parquet")
    rng = np.random.default_rng(0)
    (emb / "umap").mkdir()
    pd.DataFrame(
        {"cell_id": cells["cell_id"], "x": rng.normal(size=len(cells)), "y": rng.normal(size=len(cells))}
    ).to_parquet(emb / "umap" / "umap.parquet")
    return load_state(emb, device="cpu", threads=1)


def test_map_is_compact_and_thinned(mapped: ServeState) -> None:
    lookups = build_lookups(mapped, mapped.umap)
    full = map_payload(mapped, mapped.umap, lookups)
    assert full["total"] == full["shown"] == mapped.n
    assert all(isinstance(v, int) for v in full["label"]) and max(full["label"]) < len(full["classes"])
    thin = map_payload(mapped, mapped.umap, lookups, max_points=10)
    assert thin["shown"] == 10 and thin["total"] == mapped.n and thin["bounds"] == full["bounds"]
    assert thin == map_payload(mapped, mapped.umap, lookups, max_points=10)  # seeded


def test_an_upload_is_placed_at_the_weighted_mean(mapped: ServeState, a_cell: tuple[str, Path]) -> None:
    lookups = build_lookups(mapped, mapped.umap)
    assert lookups.xy is not None
    pairs = [(0.9, 0), (0.3, 1)]
    expected = (0.9 * lookups.xy[0] + 0.3 * lookups.xy[1]) / 1.2
    assert place_upload(lookups, pairs) == pytest.approx(expected.tolist(), abs=1e-3)
    with TestClient(create_app(mapped)) as client:
        body = post(client, png(ImageOps.mirror(Image.open(a_cell[1]).convert("RGB"))), k=3)
        assert body["map"]["placed"] == "neighbours" and len(body["map"]["query"]) == 2
        assert len(body["map"]["neighbours"]) == 3
        r = client.get("/api/umap", headers={"accept-encoding": "gzip"})
        assert r.json()["total"] == mapped.n  # httpx decodes the gzip body
        assert r.headers["content-encoding"] == "gzip"


def test_class_names_come_from_any_vocabulary_that_knows_the_code() -> None:
    from ssl_cyto.serve.lookups import class_name

    assert class_name("bm-mll", "NIF") == "Not identifiable"
    assert class_name("demo", "PMO") == "Promyelocyte"  # a copy under another source name
    assert class_name("folder:pbc_subset", "basophil") == "basophil"  # folder labels as they are
