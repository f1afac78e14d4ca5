"""Cell images come from what embed recorded: the shards, else the source folder; never a client path."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from PIL import Image

from ssl_cyto.formats.shard_index import cell_key
from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.images import ImageStore, shard_files_of
from ssl_cyto.serve.state import load_state


def test_images_of_a_shard_embedding_come_from_the_tars(shard_emb: Path, tmp_path: Path) -> None:
    state = load_state(shard_emb, device="cpu", threads=1)
    assert state.images.n_in_shards == state.n
    assert state.index_meta["kind"] == "hnsw"
    cell_id = str(state.cell_ids[3])
    # the original files are not needed: point every root at an empty folder
    state.roots[:] = str(tmp_path)
    with TestClient(create_app(state)) as client:
        r = client.get(f"/api/cells/{quote(cell_id, safe='')}/image")
        assert r.status_code == 200 and r.headers["content-type"] in ("image/png", "image/jpeg", "image/webp")
        assert r.headers["x-image-origin"] == "shard"
        assert Image.open(io.BytesIO(r.content)).size[0] > 0
        assert client.get("/api/info").json()["images"] == {"original": 0, "shard": 20, "missing": 0}
        r = client.get(f"/api/cells/{quote(cell_id, safe='')}/thumb")
        assert r.status_code == 200
        r = client.get(f"/api/cells/{quote(cell_id, safe='')}/neighbours?k=4&source=bm-mll")
        assert r.status_code == 200 and len(r.json()["neighbours"]) == 4


def test_the_original_file_is_served_at_its_size_before_the_shard_copy(shard_emb: Path) -> None:
    state = load_state(shard_emb, device="cpu", threads=1)
    cell_id = str(state.cell_ids[3])
    original = Path(str(state.roots[3])) / str(state.paths[3])
    with Image.open(original) as img:
        size = img.size
    with TestClient(create_app(state)) as client:
        r = client.get(f"/api/cells/{quote(cell_id, safe='')}/image")
        assert r.status_code == 200 and r.headers["x-image-origin"] == "original"
        assert Image.open(io.BytesIO(r.content)).size == size
        info = client.get("/api/info").json()
        assert info["images"]["original"] == 20
        assert str(state.emb_dir.parent) not in str(info)


def test_shard_files_are_found_from_embed_json(shard_emb: Path) -> None:
    state = load_state(shard_emb, device="cpu", threads=1)
    found = shard_files_of(state.folder.embed, shard_emb)
    assert found and all(p.name.startswith("cells-") and p.suffix == ".tar" for p in found)
    assert shard_files_of({"data_kind": "catalog", "data": "/nowhere"}, shard_emb) == []


def test_a_row_pointing_outside_its_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    store = ImageStore(lambda c: ("folder:x", str(root), "../secret.png") if c == "x/evil" else None)
    import pytest

    from ssl_cyto.serve.errors import ApiError

    with pytest.raises(ApiError) as exc:
        store.raw("x/evil")
    assert exc.value.status == 404
    with pytest.raises(ApiError):
        store.raw("x/unknown")


def test_tar_members_are_read_by_offset(tmp_path: Path) -> None:
    img = io.BytesIO()
    Image.new("RGB", (10, 6), (200, 10, 10)).save(img, format="PNG")
    tar_path = tmp_path / "cells-000000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (
            (cell_key("s/a.png") + ".png", img.getvalue()),
            (cell_key("s/a.png") + ".json", b"{}"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = ImageStore(
        lambda c: ("s", str(tmp_path / "gone"), "a.png") if c == "s/a.png" else None, [tar_path]
    )
    assert store.raw("s/a.png") == img.getvalue()
    data, media, origin = store.image("s/a.png")
    assert media == "image/png" and data == img.getvalue() and origin == "shard"
    shutil.rmtree(tmp_path / "gone", ignore_errors=True)
