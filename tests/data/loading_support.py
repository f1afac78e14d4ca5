"""Shared helpers of tests/data/test_loading.py and tests/data/test_datamodule.py (not collected).

The fixtures are imported by those modules (``*_fixture``, registered under ``catalog`` / ``shard_dir``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ssl_cyto.data.datamodule import CellDataModule
from ssl_cyto.data.packing import pack
from ssl_cyto.data.scanning import scan


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


def make_dm(data: str, rank: int = 0, world: int = 1, epoch: int = 0, **kw) -> CellDataModule:
    kw.setdefault("num_workers", 0)
    kw.setdefault("shuffle_buffer", 8)
    dm = CellDataModule(data, **kw)
    dm.trainer = fake_trainer(rank, world, epoch)  # type: ignore[assignment]
    dm.use_transforms(TwoViews(), Eval())  # what the task's setup does
    return dm


@pytest.fixture(scope="module", name="catalog")
def catalog_fixture(synth_aml: Path, synth_bm: Path) -> pd.DataFrame:
    cat = scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])
    return cat.groupby("source").sample(n=24, random_state=0).reset_index(drop=True)  # 48 cells


@pytest.fixture(scope="module", name="shard_dir")
def shard_dir_fixture(catalog: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dm") / "shards"
    pack(catalog, out, shard_size=6, progress=False)  # 8 shards
    return out
