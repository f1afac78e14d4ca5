"""Image hashes are computed once: by pack on the image as packed, by embed as it decodes a folder's
images, or once by probe/dedup (for a folder that has none) and kept."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.data.image_hash import hash_distance, image_hash
from ssl_cyto.evaluation.hash_store import HashTable, cell_hashes
from ssl_cyto.formats.image_hashes import HASHES_FILE, read_hashes


def _count(monkeypatch: pytest.MonkeyPatch, counts: Counter) -> None:
    """Count image decodes (open_rgb) and hash computations wherever the pipeline does them."""
    from ssl_cyto.data import image_hash as ih
    from ssl_cyto.data import images

    def counting(key: str, real):  # type: ignore[no-untyped-def]
        def f(*a, **k):  # type: ignore[no-untyped-def]
            counts[key] += 1
            return real(*a, **k)

        return f

    for where, module in (
        ("pack", "ssl_cyto.data.shard_writer"),
        ("loader", "ssl_cyto.data.loading.decode"),
        ("hash_store", "ssl_cyto.evaluation.hash_store"),
    ):
        monkeypatch.setattr(f"{module}.open_rgb", counting(f"decode {where}", images.open_rgb))
    for module in (
        "ssl_cyto.data.shard_writer",
        "ssl_cyto.data.loading.evaluation",
        "ssl_cyto.evaluation.hash_store",
    ):
        monkeypatch.setattr(f"{module}.image_hash", counting("hash", ih.image_hash))


def _backbone(tmp_path: Path) -> Path:
    import torch

    from ssl_cyto.models.factory import build_backbone
    from ssl_cyto.models.weights import save_backbone

    torch.manual_seed(1)
    module, _ = build_backbone("tiny_cnn", width=8, depth=2)
    meta = {"architecture": "tiny_cnn", "backbone_kwargs": {"width": 8, "depth": 2}, "input_size": 32}
    return save_backbone(module, tmp_path / "backbone", {**meta, "method": "simclr"})


def test_decodes_across_pack_embed_probe_dedup(
    tmp_path: Path, synth_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssl_cyto.data.packing import pack
    from ssl_cyto.embedding.runner import embed
    from ssl_cyto.evaluation.dedup import find_near_duplicates
    from ssl_cyto.evaluation.probing import probe

    counts: Counter = Counter()
    _count(monkeypatch, counts)
    index = pack(synth_folder, tmp_path / "shards", shard_size=16, workers=1, progress=False)
    n = index["total_cells"]
    assert counts == {"decode pack": n, "hash": n}
    stored = read_hashes(tmp_path / "shards")
    assert len(stored) == n and stored["phash"].str.fullmatch("[0-9a-f]{16}").all()

    emb = embed(str(_backbone(tmp_path)), str(tmp_path / "shards"), tmp_path / "emb", progress=False)
    assert counts["decode loader"] == n
    res = probe(emb, fast=True, min_cells=3, n_boot=20)
    assert len(res["models"]) == 3  # random and colour baselines: one pass over the images together
    (task,) = res["tasks"].values()
    assert task["near_duplicates"] is not None
    find_near_duplicates(emb, progress=False)
    probe(emb, fast=True, min_cells=3, n_boot=20)  # everything reused
    assert counts == {"decode pack": n, "hash": n, "decode loader": 2 * n}


def test_decodes_across_embed_of_a_folder_probe_dedup(
    tmp_path: Path, synth_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embed hashes a folder's images where its loader decodes them; probe and dedup decode none again
    for hashes (the baselines' one pass decodes each image once more, as for shards)."""
    from ssl_cyto.embedding.runner import embed
    from ssl_cyto.evaluation.dedup import find_near_duplicates
    from ssl_cyto.evaluation.probing import probe

    counts: Counter = Counter()
    _count(monkeypatch, counts)
    emb = embed(str(_backbone(tmp_path)), str(synth_folder), tmp_path / "emb", progress=False, batch_size=16)
    cells = pd.read_parquet(emb / "cells.parquet")
    n = len(cells)
    assert counts == {"decode loader": n, "hash": n}
    stored = read_hashes(emb / HASHES_FILE)
    assert sorted(stored["cell_id"]) == sorted(cells["cell_id"])
    assert cells["phash"].str.fullmatch("[0-9a-f]{16}").all()  # serve's exact-match key, as for shards
    assert not (emb / ".partial").exists()
    one = cells.iloc[0]
    from ssl_cyto.data.images import open_rgb

    expect = image_hash(open_rgb(Path(one["root"]) / one["path"]))
    row = stored.set_index("cell_id").loc[one["cell_id"]]
    assert row["hash"] == expect.to_bytes() and row["phash"] == expect.phash == one["phash"]
    counts.clear()
    res = probe(emb, fast=True, min_cells=3, n_boot=20)
    (task,) = res["tasks"].values()
    assert task["near_duplicates"] is not None
    find_near_duplicates(emb, progress=False)
    assert counts == {"decode loader": n}  # the baselines' pass only; no hash computed again


def test_a_folder_without_hashes_is_hashed_once_and_keeps_them(
    tmp_path: Path, synth_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssl_cyto.embedding.runner import embed

    emb = embed("colour_hist", str(synth_folder), tmp_path / "emb", progress=False)
    (emb / HASHES_FILE).unlink()  # as a folder embedded before embed hashed images
    cells = pd.read_parquet(emb / "cells.parquet")
    counts: Counter = Counter()
    _count(monkeypatch, counts)
    table, bad = cell_hashes(emb, cells, {}, rows=[0, 1, 2])
    assert not bad and table.ok.sum() == 3 and counts["hash"] == 3
    table, _ = cell_hashes(emb, cells, {}, rows=None)
    assert table.ok.all() and counts["hash"] == len(cells)  # the first three were kept
    assert len(read_hashes(emb / HASHES_FILE)) == len(cells)
    cell_hashes(emb, cells, {})
    assert counts["hash"] == len(cells)


def test_table_distances_equal_hash_distance() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = [
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).resize((90, 90)) for _ in range(3)
    ]
    imgs.append(imgs[0].transpose(Image.Transpose.ROTATE_90))
    hashes = [image_hash(i) for i in imgs]
    table = HashTable(4)
    table.set_rows(np.arange(4), [h.to_bytes() for h in hashes], [h.phash for h in hashes])
    pairs = np.array([[0, 1], [0, 3], [2, 3], [1, 1]])
    expect = [hash_distance(hashes[a], hashes[b]) for a, b in pairs]
    assert table.distances(pairs).tolist() == expect
    assert expect[1] <= 4 and expect[3] == 0
