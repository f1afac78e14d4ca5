"""ssl_cyto.data.loading: data resolution, eval exactly-once splits, the shard stream's source weights, decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_cyto.data import loading
from tests.data.loading_support import Eval, TwoViews, catalog_fixture, shard_dir_fixture  # noqa: F401 - fixtures


# ------------------------------------------------------------------------------------ resolution
def test_resolve_every_data_form(shard_dir: Path, synth_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from ssl_cyto.data.scanning import catalog_from_path
    from ssl_cyto.formats.catalog import write_catalog

    r = loading.resolve_data(str(shard_dir))
    assert r.kind == "shards" and len(r.urls) == 8 and r.n_cells == 48
    assert r.sources == {"aml-lmu": 24, "bm-mll": 24}
    r = loading.resolve_data(f"{shard_dir}/cells-{{000000..000003}}.tar")
    assert r.kind == "shards" and len(r.urls) == 4 and r.n_cells == 24 and r.sources is None
    r = loading.resolve_data(f"{shard_dir}/cells-*.tar")
    assert len(r.urls) == 8 and r.n_cells == 48
    r = loading.resolve_data(f"{shard_dir}/cells-000002.tar")
    assert r.urls == [f"{shard_dir}/cells-000002.tar"] and r.n_cells == 6
    r = loading.resolve_data(f"pipe:cat {shard_dir}/cells-{{000000..000007}}.tar")
    assert len(r.urls) == 8 and r.urls[0].startswith("pipe:cat ") and r.n_cells is None
    r = loading.resolve_data(str(synth_folder))
    assert r.kind == "catalog" and r.n_cells == len(catalog_from_path(synth_folder))
    parquet = write_catalog(catalog_from_path(synth_folder), tmp_path / "c.parquet")
    assert loading.resolve_data(str(parquet)).n_cells == r.n_cells

    monkeypatch.setenv("SSL_CYTO_CACHE", str(tmp_path / "cache"))
    r = loading.resolve_data("synth:folder:2")
    assert r.kind == "catalog" and r.n_cells and r.n_cells > 0
    assert (tmp_path / "cache" / "synth" / "folder-2-0").is_dir()

    with pytest.raises(FileNotFoundError, match="catalog.parquet"):
        loading.resolve_data(str(tmp_path / "nowhere"))
    with pytest.raises(loading.DataSpecError, match="per_class"):
        loading.resolve_data("synth:folder:many")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        loading.resolve_data(f"{shard_dir}/cells-{{000000..000099}}.tar")


# ------------------------------------------------------------------------------------------ eval
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_eval_shards_every_cell_once_across_ranks_and_workers(
    shard_dir: Path, catalog: pd.DataFrame, num_workers: int
) -> None:
    for world in (1, 2):
        per_rank = []
        for rank in range(world):
            loader = loading.eval_loader(
                str(shard_dir), Eval(), batch_size=5, num_workers=num_workers, rank=rank, world_size=world
            )
            ids = []
            for images, rows in loader:
                assert images.shape[1:] == (3, 16, 16) and images.shape[0] == len(rows) <= 5
                ids += [r["cell_id"] for r in rows]
            assert len(ids) == loader.n_cells
            per_rank.append(ids)
        everything = [i for ids in per_rank for i in ids]
        assert len(everything) == len(set(everything)) == 48
        assert set(everything) == set(catalog["cell_id"])


def test_eval_pipe_url_reads_every_cell(shard_dir: Path) -> None:
    loader = loading.eval_loader(f"pipe:cat {shard_dir}/cells-{{000000..000007}}.tar", Eval(), batch_size=16)
    ids = [r["cell_id"] for _, rows in loader for r in rows]
    assert len(ids) == len(set(ids)) == 48


def test_eval_folder_split_and_order(synth_folder: Path) -> None:
    from ssl_cyto.data.scanning import catalog_from_path

    expected = list(catalog_from_path(synth_folder)["cell_id"])
    for num_workers in (0, 2):
        got = []
        for rank in range(2):
            loader = loading.eval_loader(
                str(synth_folder), Eval(), batch_size=4, num_workers=num_workers, rank=rank, world_size=2
            )
            got.append([r["cell_id"] for _, rows in loader for r in rows])
        assert got[0] + got[1] == expected  # contiguous rank blocks, catalog order
        assert abs(len(got[0]) - len(got[1])) <= 1


def test_eval_skips_corrupt_images_at_read_time(tmp_path: Path) -> None:
    import webdataset as wds

    good = io.BytesIO()
    Image.new("RGB", (10, 10), (200, 10, 10)).save(good, format="PNG")
    with wds.TarWriter(str(tmp_path / "cells-000000.tar"), encoder=False) as tw:
        for i, payload in enumerate([good.getvalue(), b"\xff\xd8garbage", good.getvalue()]):
            row = f'{{"cell_id": "x/{i}", "source": "x", "label": "a"}}'.encode()
            tw.write({"__key__": f"x%2F{i}", "png": payload, "json": row})
    # counted (issue 14), not warned mid-progress-bar
    loader = loading.eval_loader(str(tmp_path), Eval(), batch_size=2)
    ids = [r["cell_id"] for _, rows in loader for r in rows]
    assert ids == ["x/0", "x/2"]
    assert [s["cell_id"] for s in loader.skipped] == ["x/1"]
    assert "cells-000000.tar:x%2F1" in loader.skipped[0]["reason"]
    assert len(loader.odd_size) == 2  # 10 x 10 px images: under 16 px on a side

    (tmp_path / "bad.jpg").write_bytes(b"")
    Image.new("RGB", (10, 10)).save(tmp_path / "ok.png")
    cat = pd.DataFrame(
        {
            "cell_id": ["f/bad.jpg", "f/ok.png"],
            "source": "f",
            "path": ["bad.jpg", "ok.png"],
            "root": str(tmp_path),
        }
    )
    loader = loading.eval_loader(cat, Eval(), batch_size=1)
    ids = [r["cell_id"] for _, rows in loader for r in rows]
    assert ids == ["f/ok.png"]
    assert [s["cell_id"] for s in loader.skipped] == ["f/bad.jpg"] and "bad.jpg" in loader.skipped[0][
        "reason"
    ]


def test_source_weights_in_the_shard_stream(shard_dir: Path) -> None:
    import json

    cls = loading.ShardTrainStream
    res = loading.resolve_data(str(shard_dir))

    def shares(weights: dict[str, float]) -> dict[str, float]:
        stream = cls(res.urls, TwoViews(), 4, 1, source_weights=weights, known_sources=set(res.sources), counts=res.counts)  # type: ignore[arg-type]
        it = stream.reader_samples(epoch=0, worker=0, n_workers=1)
        srcs = [json.loads(next(it)["json"])["source"] for _ in range(1500)]
        return {s: srcs.count(s) / len(srcs) for s in ("aml-lmu", "bm-mll")}

    assert shares({"aml-lmu": 0.0}) == {"aml-lmu": 0.0, "bm-mll": 1.0}
    # bm-mll weight 0.25 vs aml-lmu 1.0, equal counts -> bm-mll share 0.2
    assert 0.15 < shares({"bm-mll": 0.25})["bm-mll"] < 0.25
    with pytest.raises(loading.DataSpecError, match="nope"):
        cls(res.urls, TwoViews(), 4, 1, source_weights={"nope": 1.0}, known_sources=set(res.sources))  # type: ignore[arg-type]
    with pytest.raises(loading.DataSpecError, match="weight 0"):
        cls(
            res.urls,
            TwoViews(),
            4,
            1,
            source_weights={"aml-lmu": 0, "bm-mll": 0},
            known_sources=set(res.sources),  # type: ignore[arg-type]
        )


def test_decode_rgb_matches_open_rgb(tmp_path: Path, pbc_root: Path) -> None:
    from ssl_cyto.data.images import ImageDecodeError, open_rgb

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8), mode="RGB")
    rgba = Image.fromarray(rng.integers(0, 255, (9, 11, 4), dtype=np.uint8), mode="RGBA")
    grey = Image.fromarray(rng.integers(0, 255, (9, 11), dtype=np.uint8), mode="L")
    payloads = {"jpeg": next(pbc_root.rglob("*.jpg")).read_bytes()}
    for name, img, fmt, kw in [
        ("png", rgb, "PNG", {}),
        ("png_trns", rgb, "PNG", {"transparency": (0, 0, 0)}),
        ("rgba", rgba, "PNG", {}),
        ("grey", grey, "PNG", {}),
        ("webp", rgb, "WEBP", {"lossless": True}),
    ]:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)  # type: ignore[arg-type]
        payloads[name] = buf.getvalue()
    for name, data in payloads.items():
        got = loading.decode_rgb(data, name=name)
        assert got.mode == "RGB"
        assert np.array_equal(np.asarray(got), np.asarray(open_rgb(data))), name
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        loading.decode_rgb(payloads["jpeg"][:500], name="broken.jpg")
