"""The training loader of resolved data, configured by one typed options object.

:func:`train_loader` builds an :class:`~ssl_cyto.data.loading.train.EpochLoader` over a
:class:`~ssl_cyto.data.loading.train.ShardTrainStream` (shards), or a ``DataLoader`` over a
:class:`~ssl_cyto.data.loading.catalog_train.CatalogTrainDataset` with a
:class:`~ssl_cyto.data.loading.catalog_train.FixedLengthSampler` (catalogs and folders), from a
:class:`TrainLoaderOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch.utils.data import DataLoader

from ssl_cyto.data.loading.acceptance import DEFAULT_KEY, source_accept
from ssl_cyto.data.loading.catalog_train import CatalogTrainDataset, FixedLengthSampler
from ssl_cyto.data.loading.decode import collate_views, row_path
from ssl_cyto.data.loading.resolve import ResolvedData
from ssl_cyto.data.loading.seeding import ignore_preemption_signals
from ssl_cyto.data.loading.train import EpochLoader, ShardTrainStream
from ssl_cyto.formats.catalog import catalog_rows

__all__ = ["TrainLoaderOptions", "train_loader"]


@dataclass(frozen=True)
class TrainLoaderOptions:
    """How :func:`train_loader` reads: exactly ``batches`` batches of ``batch_size`` per pass.

    Attributes:
        batch_size: cells per batch.
        batches: batches per epoch on this rank.
        num_workers: DataLoader workers.
        shuffle_buffer: samples held per worker for shuffling a shard stream.
        source_weights: relative per-cell sampling weight by source (unlisted sources: 1.0).
        seed: seeds the shard stream or the sampler.
        rank: this process's global rank.
        world_size: number of ranks.
        epoch: the epoch of the first pass (catalogs; Lightning calls ``sampler.set_epoch`` later).
        epoch_fn: returns the current epoch before each pass (shards).
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: DataLoader ``persistent_workers``.
        continuous: consecutive epochs continue the stream (set with ``batches_per_epoch``).
        resume: ``(epoch, batches consumed)`` of a restart: that epoch's first batches are skipped.
    """

    batch_size: int
    batches: int
    num_workers: int = 0
    shuffle_buffer: int = 1000
    source_weights: dict[str, float] | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    epoch_fn: Callable[[], int] | None = None
    pin_memory: bool = False
    persistent_workers: bool = False
    continuous: bool = False
    resume: tuple[int, int] | None = None


def train_loader(
    res: ResolvedData,
    transform: Callable[[Any], Any],
    options: TrainLoaderOptions | None = None,
    **overrides: Any,
) -> DataLoader:
    """The training loader of resolved data: exactly ``options.batches`` batches per pass.

    Args:
        res: the resolved training data.
        transform: PIL RGB -> list[Tensor] (the views).
        options: the loader's settings.
        **overrides: fields of :class:`TrainLoaderOptions` set on top of ``options`` (or, without
            ``options``, all of them: ``batch_size`` and ``batches`` at least).

    Returns:
        An :class:`EpochLoader` over a :class:`ShardTrainStream` (shards), or a ``DataLoader`` over a
        :class:`CatalogTrainDataset` with a :class:`FixedLengthSampler` (catalogs and folders).
    """
    opts = replace(options, **overrides) if options is not None else TrainLoaderOptions(**overrides)
    return (
        _shard_loader(res, transform, opts) if res.kind == "shards" else _catalog_loader(res, transform, opts)
    )


def _shard_loader(res: ResolvedData, transform: Callable[[Any], Any], o: TrainLoaderOptions) -> DataLoader:
    ds = ShardTrainStream(
        res.urls,
        transform,
        o.batch_size,
        o.batches,
        shuffle_buffer=o.shuffle_buffer,
        source_weights=o.source_weights,
        known_sources=set(res.sources) if res.sources else None,
        seed=o.seed,
        rank=o.rank,
        world_size=o.world_size,
        counts=res.counts,
        continuous=o.continuous,
    )
    if o.resume is not None:
        ds.resume_at(*o.resume)
    return EpochLoader(
        ds,
        batch_size=None,
        num_workers=o.num_workers,
        pin_memory=o.pin_memory,
        persistent_workers=o.persistent_workers,
        worker_init_fn=ignore_preemption_signals,
        epoch_fn=o.epoch_fn,
    )


def _catalog_loader(res: ResolvedData, transform: Callable[[Any], Any], o: TrainLoaderOptions) -> DataLoader:
    assert res.catalog is not None
    rows = catalog_rows(res.catalog)
    weights = None
    accept = source_accept(o.source_weights, {r["source"] for r in rows})
    if accept is not None:
        weights = [accept.get(r["source"], accept[DEFAULT_KEY]) for r in rows]
    sampler = FixedLengthSampler(
        len(rows),
        o.batches * o.batch_size,
        rank=o.rank,
        world_size=o.world_size,
        seed=o.seed,
        weights=weights,
        continuous=o.continuous,
    )
    sampler.set_epoch(o.epoch)
    if o.resume is not None:
        sampler.resume_at(o.resume[0], o.resume[1] * o.batch_size)
    return DataLoader(
        CatalogTrainDataset([row_path(r) for r in rows], transform),
        batch_size=o.batch_size,
        sampler=sampler,
        drop_last=True,
        collate_fn=collate_views,
        num_workers=o.num_workers,
        pin_memory=o.pin_memory,
        persistent_workers=o.persistent_workers,
        worker_init_fn=ignore_preemption_signals,
    )
