"""The API in-process: every endpoint, its schema, and the 4xx answers of every bad input."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ssl_cyto.retrieval.search import query
from ssl_cyto.serve.state import ServeState
from tests.serve.conftest import SMALL_LIMITS, huge_png, png_16bit, tiff_declaring

NEIGHBOUR_KEYS = {"rank", "cell_id", "path", "label", "label_name", "source", "similarity"}


def cell_url(cell_id: str, what: str) -> str:
    return f"/api/cells/{quote(cell_id, safe='')}/{what}"


def upload(client: TestClient, data: bytes, name: str = "cell.tiff", query_string: str = "k=5", **kw: object):
    return client.post(
        f"/api/query?{query_string}", files={"image": (name, data, "application/octet-stream")}, **kw
    )


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert body["detail"] and "Traceback" not in body["detail"]


def assert_still_serving(client: TestClient, cell_id: str) -> None:
    r = client.get(cell_url(cell_id, "neighbours") + "?k=3")
    assert r.status_code == 200 and len(r.json()["neighbours"]) == 3


def test_health_and_info(client: TestClient, state: ServeState) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "cells": state.n}
    info = client.get("/api/info").json()
    assert info["cells"] == state.n == info["index"]["n"]
    assert info["index"]["kind"] == "flat" and info["model"]["architecture"] == "tiny_cnn"
    assert sum(c["count"] for c in info["classes"]) == state.n
    assert {s["source"] for s in info["sources"]} == {"aml-lmu"}
    assert all(c["name"] for c in info["classes"])
    assert info["limits"] == {
        "max_bytes": SMALL_LIMITS.max_bytes,
        "max_pixels": SMALL_LIMITS.max_pixels,
        "k_max": 1000,
    }
    assert "/" not in info["index"]["folder"]


def test_openapi_schema_lists_every_operation(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/query",
        "/api/cells/{cell_id}/neighbours",
        "/api/cells/{cell_id}/image",
        "/api/cells/{cell_id}/thumb",
        "/api/info",
        "/api/health",
        "/api/umap",
        "/api/login",
    ):
        assert path in paths, path
    body = paths["/api/query"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert {"413", "415", "422"} <= set(paths["/api/query"]["post"]["responses"])


def test_neighbours_of_a_cell_exclude_itself(client: TestClient, a_cell: tuple[str, Path]) -> None:
    cell_id, _ = a_cell
    r = client.get(cell_url(cell_id, "neighbours") + "?k=7")
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == cell_id and body["query_label"] and body["query_source"] == "aml-lmu"
    ids = [n["cell_id"] for n in body["neighbours"]]
    assert len(ids) == 7 and cell_id not in ids
    assert [n["rank"] for n in body["neighbours"]] == list(range(1, 8))
    assert all(set(n) == NEIGHBOUR_KEYS for n in body["neighbours"])
    sims = [n["similarity"] for n in body["neighbours"]]
    assert sims == sorted(sims, reverse=True)


def test_cell_neighbours_match_the_cli_query(
    client: TestClient, serve_emb: Path, a_cell: tuple[str, Path]
) -> None:
    cell_id, _ = a_cell
    cli = query(index=serve_emb, cell_ids=[cell_id], k=6)[0]["neighbours"]
    api = client.get(cell_url(cell_id, "neighbours") + "?k=6").json()["neighbours"]
    assert [n["cell_id"] for n in api] == [n["cell_id"] for n in cli]
    assert [n["similarity"] for n in api] == pytest.approx([n["similarity"] for n in cli], abs=1e-5)


def test_paths_are_relative_to_the_source_root(client: TestClient, a_cell: tuple[str, Path]) -> None:
    body = upload(client, a_cell[1].read_bytes()).json()
    for n in body["neighbours"]:
        assert not n["path"].startswith("/") and ".." not in n["path"]
        assert n["cell_id"].endswith(n["path"])


def test_rgba_tiff_upload_gets_the_cli_neighbours(
    client: TestClient, serve_emb: Path, a_cell: tuple[str, Path]
) -> None:
    cell_id, path = a_cell
    assert Image.open(path).mode == "RGBA"
    r = upload(client, path.read_bytes(), name="whatever.png", query_string="k=5&preview=true")
    assert r.status_code == 200, r.text
    body = r.json()
    preview = body["upload"].pop("preview")  # browsers cannot show a TIFF: the page shows this JPEG
    assert body["upload"] == {"format": "TIFF", "width": 400, "height": 400}
    assert preview.startswith("data:image/jpeg;base64,")
    cli = query([path], index=serve_emb, k=5)[0]["neighbours"]
    assert [n["cell_id"] for n in body["neighbours"]] == [n["cell_id"] for n in cli]
    assert body["neighbours"][0]["cell_id"] == cell_id  # the cell itself is indexed
    assert [n["similarity"] for n in body["neighbours"]] == pytest.approx(
        [n["similarity"] for n in cli], abs=1e-5
    )


def test_16bit_png_upload_gets_the_cli_neighbours(
    client: TestClient, serve_emb: Path, a_cell: tuple[str, Path], tmp_path: Path
) -> None:
    data = png_16bit(Image.open(a_cell[1]))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    file = tmp_path / "cell16.png"
    file.write_bytes(data)
    r = upload(client, data, name="cell16.png", query_string="k=8")
    assert r.status_code == 200, r.text
    cli = query([file], index=serve_emb, k=8)[0]["neighbours"]
    assert [n["cell_id"] for n in r.json()["neighbours"]] == [n["cell_id"] for n in cli]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_other_formats_are_accepted(client: TestClient, a_cell: tuple[str, Path], fmt: str) -> None:
    buf = io.BytesIO()
    Image.open(a_cell[1]).convert("RGB").save(buf, format=fmt)
    r = upload(client, buf.getvalue(), name="cell.bin")
    assert r.status_code == 200, r.text
    assert r.json()["upload"]["format"] == fmt


def test_filters_return_k_matching_cells(
    client: TestClient, state: ServeState, a_cell: tuple[str, Path]
) -> None:
    label = str(state.labels[0])
    n_label = int((state.labels == label).sum())
    r = upload(
        client, a_cell[1].read_bytes(), query_string=f"k={n_label}&label={quote(label)}&source=aml-lmu"
    )
    body = r.json()
    assert r.status_code == 200 and body["label"] == label and body["source"] == "aml-lmu"
    assert len(body["neighbours"]) == n_label and all(n["label"] == label for n in body["neighbours"])
    cell_id = a_cell[0]
    r = client.get(cell_url(cell_id, "neighbours") + f"?k=2&label={quote(label)}")
    assert [n["label"] for n in r.json()["neighbours"]] == [label, label]
    assert_error(client.get(cell_url(cell_id, "neighbours") + "?label=NOPE"), 400, "unknown_label")
    assert_error(client.get(cell_url(cell_id, "neighbours") + "?source=nowhere"), 400, "unknown_source")


def test_image_and_thumb(client: TestClient, a_cell: tuple[str, Path]) -> None:
    cell_id, _ = a_cell
    r = client.get(cell_url(cell_id, "image"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"  # TIFF converted for the browser
    assert Image.open(io.BytesIO(r.content)).size == (400, 400)
    r = client.get(cell_url(cell_id, "thumb"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 128


def test_umap_absent_gives_a_hint(client: TestClient) -> None:
    body = client.get("/api/umap").json()
    assert body["available"] is False and "ssl-cyto umap EMB_DIR" in body["hint"]
    assert "ssl-cyto umap EMB_DIR" in client.get("/static/app.js").text  # the page says it too


def test_page_is_served_offline(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    for asset in ("/static/app.js", "/static/map.js", "/static/app.css"):
        r = client.get(asset)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text  # no CDN
    assert "https://" not in page.text and "http://" not in page.text


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        (b"", "empty.tiff", 400, "empty_upload"),
        (b"this is not an image, only text\n" * 10, "cell.jpg", 415, "not_an_image"),
        (huge_png(), "big.png", 413, "too_many_pixels"),
        (tiff_declaring(), "big.tiff", 413, "too_many_pixels"),
        (b"\x00" * (SMALL_LIMITS.max_bytes + 1), "big.bin", 413, "too_many_bytes"),
    ],
    ids=["empty", "text-named-jpg", "png-10000x10000", "tiff-declares-20000x20000", "over-byte-limit"],
)
def test_bad_uploads(
    client: TestClient, a_cell: tuple[str, Path], data: bytes, name: str, status: int, code: str
) -> None:
    assert_error(upload(client, data, name=name), status, code)
    assert_still_serving(client, a_cell[0])


def test_truncated_uploads(client: TestClient, a_cell: tuple[str, Path]) -> None:
    tiff = a_cell[1].read_bytes()
    buf = io.BytesIO()
    Image.open(a_cell[1]).convert("RGB").save(buf, format="JPEG")
    for data in (tiff[: len(tiff) // 2], buf.getvalue()[: len(buf.getvalue()) // 3], tiff[:6]):
        assert_error(upload(client, data), 400, "undecodable_image")
    assert_still_serving(client, a_cell[0])


def test_form_problems(client: TestClient, a_cell: tuple[str, Path]) -> None:
    data = a_cell[1].read_bytes()
    assert_error(client.post("/api/query", files={"file": ("c.tiff", data)}), 400, "missing_image")
    assert_error(
        client.post("/api/query", content=data, headers={"content-type": "image/tiff"}), 415, "not_multipart"
    )
    assert_error(
        client.post(
            "/api/query",
            content=b"--x\r\nbroken",
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        400,
        "missing_image",
    )


@pytest.mark.parametrize("k", ["0", str(10**9), "-3", "ten"])
def test_k_is_bounded(client: TestClient, a_cell: tuple[str, Path], k: str) -> None:
    assert_error(client.get(cell_url(a_cell[0], "neighbours") + f"?k={k}"), 422, "invalid_request")
    assert_error(upload(client, a_cell[1].read_bytes(), query_string=f"k={k}"), 422, "invalid_request")
    assert_still_serving(client, a_cell[0])


def test_k_above_the_cell_count_gives_every_other_cell(
    client: TestClient, state: ServeState, a_cell: tuple[str, Path]
) -> None:
    r = client.get(cell_url(a_cell[0], "neighbours") + "?k=1000")
    assert r.status_code == 200 and len(r.json()["neighbours"]) == state.n - 1


@pytest.mark.parametrize(
    "cell_id",
    ["no/such/cell.tiff", "../../../etc/passwd", "aml-lmu/../../etc/passwd", "%2e%2e%2fetc", ""],
)
def test_unknown_and_traversal_ids(client: TestClient, a_cell: tuple[str, Path], cell_id: str) -> None:
    for what in ("neighbours", "image", "thumb"):
        assert_error(client.get(cell_url(cell_id, what)), 404, "unknown_cell")
    assert_still_serving(client, a_cell[0])


def test_unknown_route_is_json(client: TestClient) -> None:
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.delete("/api/info"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("data", "size"),
    [(huge_png(20_000, 20_000), "20000x20000"), (tiff_declaring(20_000, 20_000), "20000x20000")],
    ids=["png-bomb", "tiff-header"],
)
def test_huge_headers_and_bombs_get_the_max_pixels_answer(client: TestClient, data: bytes, size: str) -> None:
    r = upload(client, data, name="big.img")
    assert_error(r, 413, "too_many_pixels")
    detail = r.json()["detail"]
    assert size in detail and "--max-pixels" in detail and "bomb" not in detail.lower()


def test_bomb_over_pillows_cap_with_a_large_max_pixels(state: ServeState) -> None:
    from ssl_cyto.serve.app import create_app
    from ssl_cyto.serve.uploads import Limits

    with TestClient(create_app(state, Limits(max_bytes=2_000_000, max_pixels=10**10))) as big:
        r = upload(big, huge_png(20_000, 20_000), name="big.png")
    assert_error(r, 413, "too_many_pixels")
    assert "--max-pixels" in r.json()["detail"] and "bomb" not in r.json()["detail"].lower()
