"""ssl_cyto.data.loading.acceptance: source weights decided once per cell and pass, before the split, so
no reader repeats another's cells (2 ranks x 2 loader workers)."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from ssl_cyto.data import loading
from ssl_cyto.data.loading.acceptance import AcceptedPool, scan_shard, source_accept
from ssl_cyto.formats.shard_index import write_index

SOURCES = ("a", "b", "c")
PER_SOURCE = 200
WEIGHTS = {"a": 1.0, "b": 0.25, "c": 0.25}  # accepts about half the cells


class CellIndex:
    """PIL -> [tensor([cell index])]: the index is written in the first pixel."""

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        r, g, _ = img.getpixel((0, 0))
        return [torch.tensor([r * 256 + g])]


@pytest.fixture(scope="module")
def weighted_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str]]:
    out = tmp_path_factory.mktemp("weighted")
    rng = np.random.default_rng(0)
    cells = [(i, SOURCES[i % 3]) for i in range(3 * PER_SOURCE)]
    rng.shuffle(cells)  # type: ignore[arg-type]
    shards = []
    for s in range(12):
        name = f"cells-{s:06d}.tar"
        chunk = cells[s * 50 : (s + 1) * 50]
        with wds.TarWriter(str(out / name)) as tw:
            for i, src in chunk:
                img = Image.new("RGB", (4, 4), (i // 256, i % 256, 0))
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                row = {"cell_id": f"c{i}", "source": src}
                tw.write({"__key__": f"c{i:05d}", "png": buf.getvalue(), "json": json.dumps(row)})
        shards.append({"name": name, "count": len(chunk)})
    write_index(out, {"shards": shards, "sources": dict.fromkeys(SOURCES, PER_SOURCE)})
    return out, {i: src for i, src in cells}


def test_scan_shard_reads_keys_and_sources(weighted_shards: tuple[Path, dict[int, str]]) -> None:
    root, source_of = weighted_shards
    rows = scan_shard(str(root / "cells-000000.tar"))
    assert len(rows) == 50 and all(source_of[int(k[1:])] == s for k, s in rows)


def test_pool_passes_are_seeded_and_differ(weighted_shards: tuple[Path, dict[int, str]]) -> None:
    root, _ = weighted_shards
    res = loading.resolve_data(str(root))
    accept = source_accept(WEIGHTS, set(SOURCES))
    assert accept is not None
    pool = AcceptedPool([scan_shard(u) for u in res.urls], accept, seed=3)
    again = AcceptedPool([scan_shard(u) for u in res.urls], accept, seed=3)
    assert all((a == b).all() for a, b in zip(pool.masks(0), again.masks(0), strict=True))
    assert any((a != b).any() for a, b in zip(pool.masks(0), pool.masks(1), strict=True))
    assert abs(pool.total(0) - 300) < 5 * math.sqrt(300)
    assert pool.locate(pool.total(0) + 2) == (1, 2)


@pytest.mark.parametrize("continuous", [False, True])
def test_weighted_epoch_reads_each_cell_once_across_ranks_and_workers(
    weighted_shards: tuple[Path, dict[int, str]], capsys: pytest.CaptureFixture[str], continuous: bool
) -> None:
    root, source_of = weighted_shards
    res = loading.resolve_data(str(root))
    batch, batches = 8, 16  # an epoch reads 2 x 16 x 8 = 256 of the ~300 accepted cells
    options = loading.TrainLoaderOptions(
        batch_size=batch,
        batches=batches,
        num_workers=2,
        shuffle_buffer=16,
        source_weights=WEIGHTS,
        seed=1,
        world_size=2,
        continuous=continuous,
    )
    loaders = [loading.train_loader(res, CellIndex(), options, rank=rank) for rank in range(2)]
    for epoch in range(1 if continuous else 2):
        cells = [int(i) for ld in loaders for (view,) in ld for i in view.flatten()]
        assert len(cells) == 2 * batches * batch
        repeated = {c: n for c, n in Counter(cells).items() if n > 1}
        assert not repeated, f"epoch {epoch}: cells read more than once: {repeated}"
        accepted_mass = sum(WEIGHTS[s] * PER_SOURCE for s in SOURCES)
        for src in SOURCES:
            share = sum(source_of[c] == src for c in cells) / len(cells)
            expected = WEIGHTS[src] * PER_SOURCE / accepted_mass
            se = math.sqrt(expected * (1 - expected) / len(cells))
            assert abs(share - expected) < 3 * se, (src, share, expected)


def test_a_small_pool_starts_a_new_pass_and_says_so(
    weighted_shards: tuple[Path, dict[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = weighted_shards
    res = loading.resolve_data(str(root))
    loader = loading.train_loader(
        res, CellIndex(), batch_size=8, batches=50, shuffle_buffer=16, source_weights=WEIGHTS, continuous=True
    )
    assert "continues into a new pass" in capsys.readouterr().err
    cells = [int(i) for (view,) in loader for i in view.flatten()]
    first = loader.dataset.pool.total(0)  # type: ignore[attr-defined]
    assert len(cells) == 400 and first < 400
    head = cells[: first - 16]  # a whole pass (less the shuffle buffer), then repeats
    assert len(set(head)) == len(head) and len(set(cells)) < 400
