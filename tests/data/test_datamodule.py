"""CellDataModule: train batch counts and seeding, the sampler's source weights, the val subset, Lightning and DDP."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from ssl_cyto.data import datamodule as dmod
from ssl_cyto.data.loading import resolve_data
from ssl_cyto.data.packing import pack
from tests.data.loading_support import (  # noqa: F401 - the *_fixture are fixtures
    Eval,
    TwoViews,
    catalog_fixture,
    make_dm,
    shard_dir_fixture,
)


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
    n_cells = resolve_data(data).n_cells
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


def test_source_weights_in_the_sampler(synth_aml: Path, synth_bm: Path, tmp_path: Path) -> None:
    from ssl_cyto.data.scanning import scan
    from ssl_cyto.formats.catalog import write_catalog

    cat = scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])
    path = write_catalog(cat, tmp_path / "both.parquet")
    dm = make_dm(str(path), batch_size=8, source_weights={"bm-mll": 0.0}, batches_per_epoch=6)
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, torch.utils.data.DistributedSampler) and len(sampler) == 48
    assert {cat["source"][i] for i, _seed in sampler} == {"aml-lmu"}  # items are (index, view seed)


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
        assert len(dm._val_items) == 10  # type: ignore[arg-type]
    assert len(subsets[0]) + len(subsets[1]) == 10
    assert abs(len(subsets[0]) - len(subsets[1])) <= 1

    # the same seed gives the same subset; val_data overrides data
    a, b = make_dm(data, val_size=6), make_dm(data, val_size=6)
    a.setup("fit")
    b.setup("fit")
    assert [x[2] for x in a._val_items] == [x[2] for x in b._val_items]  # type: ignore[union-attr]
    other = make_dm(data, val_size=6, val_data=str(synth_folder))
    other.setup("fit")
    from ssl_cyto.data.scanning import catalog_from_path

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
    dm.use_transforms(TwoViews(), Eval())  # what an SSLTask's setup does
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
    dm.use_transforms(TwoViews(), Eval())
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
