"""CellDataModule and eval_loader: data resolution, eval exactly-once splits, train batch counts, val subset."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from ssl_cyto.data import datamodule as dmod
from ssl_cyto.data.shards import pack


class Eval:
    """PIL -> (3, 16, 16) float tensor."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(img.resize((16, 16)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class TwoViews:
    """PIL -> [view, flipped view] (deterministic, so batches can be compared)."""

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        x = Eval()(img)
        return [x, x.flip(-1)]


def fake_trainer(rank: int = 0, world: int = 1, epoch: int = 0) -> SimpleNamespace:
    module = SimpleNamespace(train_transform=TwoViews(), eval_transform=Eval())
    return SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch, lightning_module=module)


def make_dm(data: str, rank: int = 0, world: int = 1, epoch: int = 0, **kw) -> dmod.CellDataModule:
    kw.setdefault("num_workers", 0)
    kw.setdefault("shuffle_buffer", 8)
    dm = dmod.CellDataModule(data, **kw)
    dm.trainer = fake_trainer(rank, world, epoch)
    return dm


@pytest.fixture(scope="module")
def catalog(synth_aml: Path, synth_bm: Path) -> pd.DataFrame:
    from ssl_cyto.data.catalog import scan

    cat = scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])
    return cat.groupby("source").sample(n=24, random_state=0).reset_index(drop=True)  # 48 cells


@pytest.fixture(scope="module")
def shard_dir(catalog: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dm") / "shards"
    pack(catalog, out, shard_size=6, progress=False)  # 8 shards
    return out


# ------------------------------------------------------------------------------------ resolution
def test_resolve_every_data_form(shard_dir: Path, synth_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from ssl_cyto.data.catalog import catalog_from_path, write_catalog

    r = dmod.resolve_data(str(shard_dir))
    assert r.kind == "shards" and len(r.urls) == 8 and r.n_cells == 48
    assert r.sources == {"aml-lmu": 24, "bm-mll": 24}
    r = dmod.resolve_data(f"{shard_dir}/cells-{{000000..000003}}.tar")
    assert r.kind == "shards" and len(r.urls) == 4 and r.n_cells == 24 and r.sources is None
    r = dmod.resolve_data(f"{shard_dir}/cells-*.tar")
    assert len(r.urls) == 8 and r.n_cells == 48
    r = dmod.resolve_data(f"{shard_dir}/cells-000002.tar")
    assert r.urls == [f"{shard_dir}/cells-000002.tar"] and r.n_cells == 6
    r = dmod.resolve_data(f"pipe:cat {shard_dir}/cells-{{000000..000007}}.tar")
    assert len(r.urls) == 8 and r.urls[0].startswith("pipe:cat ") and r.n_cells is None
    r = dmod.resolve_data(str(synth_folder))
    assert r.kind == "catalog" and r.n_cells == len(catalog_from_path(synth_folder))
    parquet = write_catalog(catalog_from_path(synth_folder), tmp_path / "c.parquet")
    assert dmod.resolve_data(str(parquet)).n_cells == r.n_cells

    monkeypatch.setenv("SSL_CYTO_CACHE", str(tmp_path / "cache"))
    r = dmod.resolve_data("synth:folder:2")
    assert r.kind == "catalog" and r.n_cells and r.n_cells > 0
    assert (tmp_path / "cache" / "synth" / "folder-2-0").is_dir()

    with pytest.raises(FileNotFoundError, match="catalog.parquet"):
        dmod.resolve_data(str(tmp_path / "nowhere"))
    with pytest.raises(dmod.DataSpecError, match="per_class"):
        dmod.resolve_data("synth:folder:many")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        dmod.resolve_data(f"{shard_dir}/cells-{{000000..000099}}.tar")


# ------------------------------------------------------------------------------------------ eval
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_eval_shards_every_cell_once_across_ranks_and_workers(
    shard_dir: Path, catalog: pd.DataFrame, num_workers: int
) -> None:
    for world in (1, 2):
        per_rank = []
        for rank in range(world):
            loader = dmod.eval_loader(
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
    loader = dmod.eval_loader(f"pipe:cat {shard_dir}/cells-{{000000..000007}}.tar", Eval(), batch_size=16)
    ids = [r["cell_id"] for _, rows in loader for r in rows]
    assert len(ids) == len(set(ids)) == 48


def test_eval_folder_split_and_order(synth_folder: Path) -> None:
    from ssl_cyto.data.catalog import catalog_from_path

    expected = list(catalog_from_path(synth_folder)["cell_id"])
    for num_workers in (0, 2):
        got = []
        for rank in range(2):
            loader = dmod.eval_loader(
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
    with pytest.warns(UserWarning, match=r"cells-000000.tar:x%2F1"):
        ids = [
            r["cell_id"] for _, rows in dmod.eval_loader(str(tmp_path), Eval(), batch_size=2) for r in rows
        ]
    assert ids == ["x/0", "x/2"]

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
    with pytest.warns(UserWarning, match="bad.jpg"):
        ids = [r["cell_id"] for _, rows in dmod.eval_loader(cat, Eval(), batch_size=1) for r in rows]
    assert ids == ["f/ok.png"]


# ----------------------------------------------------------------------------------------- train
def count_batches(dm: dmod.CellDataModule, batch_size: int) -> int:
    dl = dm.train_dataloader()
    n = 0
    for batch in dl:
        assert isinstance(batch, list) and len(batch) == 2
        assert batch[0].shape == (batch_size, 3, 16, 16) == batch[1].shape
        n += 1
    assert n == len(dl)
    return n


@pytest.mark.parametrize("kind", ["shards", "folder"])
def test_train_gives_every_rank_the_same_number_of_batches(
    kind: str, shard_dir: Path, synth_folder: Path
) -> None:
    data = str(shard_dir if kind == "shards" else synth_folder)
    n_cells = dmod.resolve_data(data).n_cells
    assert n_cells
    expected = n_cells // (4 * 2)
    for num_workers in (0, 2):
        counts = [
            count_batches(make_dm(data, r, 2, batch_size=4, num_workers=num_workers), 4) for r in range(2)
        ]
        assert counts == [expected, expected]
    counts = [
        count_batches(make_dm(data, r, 2, batch_size=3, num_workers=2, batches_per_epoch=5), 3)
        for r in range(2)
    ]
    assert counts == [5, 5]


@pytest.mark.parametrize("kind", ["shards", "folder"])
def test_train_stream_is_seeded_and_changes_with_the_epoch(
    kind: str, shard_dir: Path, synth_folder: Path
) -> None:
    data = str(shard_dir if kind == "shards" else synth_folder)

    def first(epoch: int, seed: int = 0, rank: int = 0) -> torch.Tensor:
        dm = make_dm(data, rank, 2, epoch, batch_size=4, seed=seed)
        return next(iter(dm.train_dataloader()))[0]

    a = first(0)
    assert torch.equal(a, first(0))
    assert not torch.equal(a, first(1))
    assert not torch.equal(a, first(0, seed=1))
    assert not torch.equal(a, first(0, rank=1))


def test_source_weights_in_the_shard_stream(shard_dir: Path) -> None:
    import json
    import random

    cls = dmod.ShardTrainStream
    res = dmod.resolve_data(str(shard_dir))

    def shares(weights: dict[str, float]) -> dict[str, float]:
        stream = cls(res.urls, TwoViews(), 4, 1, source_weights=weights, known_sources=set(res.sources))
        it = stream._samples(random.Random(0), 0)
        srcs = [json.loads(next(it)["json"])["source"] for _ in range(1500)]
        return {s: srcs.count(s) / len(srcs) for s in ("aml-lmu", "bm-mll")}

    assert shares({"aml-lmu": 0.0}) == {"aml-lmu": 0.0, "bm-mll": 1.0}
    # bm-mll weight 0.25 vs aml-lmu 1.0, equal counts -> bm-mll share 0.2
    assert 0.15 < shares({"bm-mll": 0.25})["bm-mll"] < 0.25
    with pytest.raises(dmod.DataSpecError, match="nope"):
        cls(res.urls, TwoViews(), 4, 1, source_weights={"nope": 1.0}, known_sources=set(res.sources))
    with pytest.raises(dmod.DataSpecError, match="weight 0"):
        cls(
            res.urls,
            TwoViews(),
            4,
            1,
            source_weights={"aml-lmu": 0, "bm-mll": 0},
            known_sources=set(res.sources),
        )


def test_source_weights_in_the_sampler(synth_aml: Path, synth_bm: Path, tmp_path: Path) -> None:
    from ssl_cyto.data.catalog import scan, write_catalog

    cat = scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])
    path = write_catalog(cat, tmp_path / "both.parquet")
    dm = make_dm(str(path), batch_size=8, source_weights={"bm-mll": 0.0}, batches_per_epoch=6)
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, torch.utils.data.DistributedSampler) and len(sampler) == 48
    assert {cat["source"][i] for i in sampler} == {"aml-lmu"}


# ------------------------------------------------------------------------------------------- val
@pytest.mark.parametrize("kind", ["shards", "folder"])
def test_val_subset_is_fixed_labelled_and_split_across_ranks(
    kind: str, shard_dir: Path, synth_folder: Path
) -> None:
    data = str(shard_dir if kind == "shards" else synth_folder)
    subsets = []
    for rank in range(2):
        dm = make_dm(data, rank, 2, val_size=10, batch_size=4)
        dm.setup("fit")
        assert dm.val_classes == sorted(dm.val_classes) and len(dm.val_classes) >= 2
        seen = []
        for images, labels in dm.val_dataloader():
            assert images.shape[1:] == (3, 16, 16) and labels.dtype == torch.long
            assert int(labels.max()) < len(dm.val_classes)
            seen += [(images[i].sum().item(), int(labels[i])) for i in range(len(labels))]
        subsets.append(seen)
        assert len(dm._val_items) == 10
    assert len(subsets[0]) + len(subsets[1]) == 10
    assert abs(len(subsets[0]) - len(subsets[1])) <= 1

    # the same seed gives the same subset; val_data overrides data
    a, b = make_dm(data, val_size=6), make_dm(data, val_size=6)
    a.setup("fit")
    b.setup("fit")
    assert [x[2] for x in a._val_items] == [x[2] for x in b._val_items]
    other = make_dm(data, val_size=6, val_data=str(synth_folder))
    other.setup("fit")
    from ssl_cyto.data.catalog import catalog_from_path

    assert set(other.val_classes) <= set(catalog_from_path(synth_folder)["label"])


def test_val_without_labels_is_off(tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (12, 12), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    cat = pd.DataFrame(
        {
            "cell_id": [f"u/{i}.png" for i in range(3)],
            "source": "u",
            "path": [f"{i}.png" for i in range(3)],
            "root": str(tmp_path),
        }
    )
    out = tmp_path / "shards"
    pack(cat, out, shard_size=2, progress=False)
    dm = make_dm(str(out), val_size=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    assert any("no labelled cells" in str(w.message) for w in caught)
    assert dm.val_dataloader() == [] and dm.val_classes == []


# ------------------------------------------------------------------------------------- Lightning
@pytest.mark.parametrize("kind", ["shards", "folder"])
def test_lightning_fit_runs_the_planned_batches(kind: str, shard_dir: Path, synth_folder: Path) -> None:
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3 * 16 * 16, 4)
            self.seen: list[tuple[int, int]] = []
            self.val_seen = 0

        @property
        def train_transform(self) -> TwoViews:
            return TwoViews()

        @property
        def eval_transform(self) -> Eval:
            return Eval()

        def training_step(self, batch: list[torch.Tensor], idx: int) -> torch.Tensor:
            self.seen.append((self.current_epoch, batch[0].shape[0]))
            return sum(self.lin(v.flatten(1)).pow(2).mean() for v in batch)

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> None:
            self.val_seen += len(batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = str(shard_dir if kind == "shards" else synth_folder)
    dm = dmod.CellDataModule(
        data,
        batch_size=4,
        num_workers=2,
        persistent_workers=True,
        batches_per_epoch=3,
        val_size=6,
        shuffle_buffer=8,
    )
    model = Tiny()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert model.seen == [(0, 4)] * 3 + [(1, 4)] * 3
    assert model.val_seen == 2 * 6


# ------------------------------------------------------------------------------------------- DDP


class RecordingTask(pl.LightningModule):
    """Records the epochs of its training steps and the validation images each rank sees."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.lin = torch.nn.Linear(3 * 16 * 16, 4)
        self.seen: list[int] = []
        self.val_sums: list[float] = []

    @property
    def train_transform(self) -> TwoViews:
        return TwoViews()

    @property
    def eval_transform(self) -> Eval:
        return Eval()

    def training_step(self, batch: list[torch.Tensor], idx: int) -> torch.Tensor:
        self.seen.append(self.current_epoch)
        return sum(self.lin(v.flatten(1)).pow(2).mean() for v in batch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> None:
        self.val_sums += [round(float(x.sum()), 3) for x in batch[0]]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        import json

        Path(self.out, f"rank{self.global_rank}.json").write_text(
            json.dumps({"seen": self.seen, "val": self.val_sums})
        )


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_ranks_run_the_same_batches_and_split_val(shard_dir: Path, tmp_path: Path) -> None:
    import json

    task = RecordingTask(str(tmp_path))
    dm = dmod.CellDataModule(str(shard_dir), batch_size=4, num_workers=1, val_size=7, shuffle_buffer=8)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    per_epoch = 48 // (4 * 2)  # default batches_per_epoch: cells // (batch_size * world_size)
    assert ranks[0]["seen"] == ranks[1]["seen"] == [0] * per_epoch + [1] * per_epoch
    val = ranks[0]["val"] + ranks[1]["val"]
    assert len(val) == 2 * 7 and len(ranks[0]["val"]) == 2 * 4 and len(ranks[1]["val"]) == 2 * 3


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
        img.save(buf, format=fmt, **kw)
        payloads[name] = buf.getvalue()
    for name, data in payloads.items():
        got = dmod.decode_rgb(data, name=name)
        assert got.mode == "RGB"
        assert np.array_equal(np.asarray(got), np.asarray(open_rgb(data))), name
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        dmod.decode_rgb(payloads["jpeg"][:500], name="broken.jpg")
