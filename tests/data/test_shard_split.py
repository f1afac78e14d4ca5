"""The shard stream is split across ranks and workers by a seeded permutation per epoch: one epoch on
2 ranks x 2 workers sees no cell twice and leaves out fewer cells than one global batch; consecutive
epochs continue the permutation with ``batches_per_epoch``; a restart skips exactly what was consumed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_cyto.data import loading
from ssl_cyto.data.loading.train import EpochLoader, ShardTrainStream, resumed_slot, worker_quotas
from tests.data.loading_support import catalog_fixture, shard_dir_fixture  # noqa: F401 - fixtures


class Pixels:
    """PIL -> [uint8 tensor of the image as it is] (identifies the cell)."""

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(img.resize((12, 12)), dtype=np.uint8).copy())]


def _ids(batch: list[torch.Tensor]) -> list[str]:
    return [hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in batch[0]]


def _stream(shard_dir: Path, rank: int, batch: int, batches: int, **kw) -> ShardTrainStream:  # type: ignore[no-untyped-def]
    res = loading.resolve_data(str(shard_dir))
    kw.setdefault("counts", res.counts)
    return ShardTrainStream(
        res.urls, Pixels(), batch, batches, shuffle_buffer=5, rank=rank, world_size=2, **kw
    )


def _epoch(stream: ShardTrainStream, epoch: int, workers: int) -> list[list[str]]:
    loader = EpochLoader(stream, batch_size=None, num_workers=workers, epoch_fn=lambda: epoch)
    return [_ids(b) for b in loader]


def _all_cells(shard_dir: Path) -> set[str]:
    res = loading.resolve_data(str(shard_dir))
    s = ShardTrainStream(res.urls, Pixels(), 1, 1, counts=res.counts)
    out = set()
    for k, sample in enumerate(s._from_position(0)):
        if k >= sum(res.counts or []):
            break
        out.add(_ids([Pixels()(loading.decode_sample(sample)[0])[0][None]])[0])  # type: ignore[index]
    return out


def test_one_epoch_two_ranks_two_workers_sees_no_cell_twice(shard_dir: Path) -> None:
    cells = _all_cells(shard_dir)
    n, batch = len(cells), 5
    assert n == 48  # every cell has distinct pixels, so pixels identify cells
    batches = n // (batch * 2)  # batches_per_epoch unset: what the data module computes
    seen = [c for r in range(2) for b in _epoch(_stream(shard_dir, r, batch, batches), 0, 2) for c in b]
    assert len(seen) == batches * batch * 2
    assert len(set(seen)) == len(seen) and set(seen) <= cells
    assert n - len(seen) < batch * 2  # fewer left out than one global batch
    # the next epoch is another permutation
    again = [c for r in range(2) for b in _epoch(_stream(shard_dir, r, batch, batches), 1, 2) for c in b]
    assert len(set(again)) == len(again) and again != seen


def test_consecutive_epochs_continue_the_permutation(shard_dir: Path) -> None:
    seen = []
    for epoch in range(3):  # 3 epochs x 2 ranks x 2 batches x 4 cells = the 48 cells
        for r in range(2):
            seen += [c for b in _epoch(_stream(shard_dir, r, 4, 2, continuous=True), epoch, 2) for c in b]
    assert len(seen) == 48 and len(set(seen)) == 48


def test_fewer_shards_than_readers_without_counts_is_an_error(shard_dir: Path) -> None:
    stream = _stream(shard_dir, 0, 2, 8, counts=None)  # 8 shards, whole shards dealt
    with pytest.raises(loading.DataSpecError, match=r"8 shard\(s\) for 10 readers \(2 rank\(s\) x 5 worker"):
        next(stream.reader_samples(epoch=0, worker=0, n_workers=5))
    assert len(_epoch(_stream(shard_dir, 0, 2, 4, counts=None), 0, 2)) == 4  # 2 x 2 readers: fine


@pytest.mark.parametrize("workers", [0, 2])
def test_restart_skips_exactly_the_consumed_batches(shard_dir: Path, workers: int) -> None:
    full = _epoch(_stream(shard_dir, 1, 3, 7, continuous=True), 2, workers)
    for done in (1, 4):
        stream = _stream(shard_dir, 1, 3, 7, continuous=True)
        stream.resume_at(2, done)
        assert _epoch(stream, 2, workers) == full[done:]
        assert _epoch(stream, 3, workers) == _epoch(_stream(shard_dir, 1, 3, 7, continuous=True), 3, workers)


def test_catalog_sampler_restart_and_continuity() -> None:
    sampler = loading.FixedLengthSampler(10, 3, rank=1, world_size=2, seed=0, continuous=True)
    draws = []
    for epoch in range(5):  # 5 epochs x 6 = 3 passes over 10 items
        sampler.set_epoch(epoch)
        draws += list(sampler.epoch_indices(epoch).tolist())
    assert sorted(draws[:10]) == list(range(10)) and sorted(draws[10:20]) == list(range(10))
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.resume_at(3, 2)
    assert list(sampler) == full[2:]
    assert list(sampler) == full  # the skip applies once
    loader = DataLoader(range(3), batch_size=1)  # the round-robin order the worker slots assume
    assert len(loader) == 3 and worker_quotas(7, 2) == [4, 3] and resumed_slot(0, 2, 3) == (1, 1)
