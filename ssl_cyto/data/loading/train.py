"""Training streams: every rank gets the same, fixed number of batches per epoch.

* Shards (:class:`ShardTrainStream`): WebDataset's resampling shard sampler (``wds.ResampledShards``;
  each (rank, worker) draws its own seeded shard sequence, so no explicit node/worker split is needed
  and no rank can run dry), a per-worker shuffle buffer of undecoded samples, and a cut into exactly
  ``batches`` batches per rank and epoch, so no DDP rank waits for another.
* Folders and catalogs (:class:`CatalogTrainDataset`): a map-style dataset with the seeded
  :class:`FixedLengthSampler` (a ``DistributedSampler`` subclass, so Lightning leaves it alone).

A batch is ``list[Tensor]``: one stacked tensor per view of the task's ``train_transform``; no labels.

Per-source sampling weights (``source_weights``) are relative per-cell weights: a cell of source ``s``
is drawn with probability proportional to ``source_weights.get(s, 1.0)``. For example
``{"aml-lmu": 9.0}`` makes AML-LMU (about 10% of the combined cells) about half of the samples. Shard
streams apply them by rejection before decoding (accept with ``w_s / max w``), the sampler by
weighted draws.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.distributed import DistributedSampler

from ssl_cyto.data.loading.decode import collate_views, decode_sample, read_rgb, row_path
from ssl_cyto.data.loading.resolve import DataSpecError, ResolvedData
from ssl_cyto.data.loading.seeding import current_worker, mix_seed
from ssl_cyto.formats.catalog import catalog_rows

MAX_IDLE_SAMPLES = 100_000  # a train stream gives up after this many samples in a row yield nothing
DEFAULT_KEY = "__default__"  # key of source_accept's result: the acceptance of unlisted sources


def source_accept(source_weights: dict[str, float] | None, known: set[str] | None) -> dict[str, float] | None:
    """Per-source acceptance probabilities ``w_s / max w`` (None: accept everything).

    Unlisted sources have weight 1.0 (the key ``"__default__"`` of the result holds their probability).

    Raises:
        DataSpecError: a negative or non-finite weight, a source not in ``known``, or all weights 0.
    """
    if not source_weights:
        return None
    for s, w in source_weights.items():
        if not (isinstance(w, (int, float)) and w >= 0 and math.isfinite(w)):
            raise DataSpecError(f"source_weights[{s!r}] = {w!r}: weights must be finite and >= 0")
    if known is not None:
        unknown = sorted(set(source_weights) - known)
        if unknown:
            raise DataSpecError(
                f"source_weights names source(s) {unknown} not in the data; its sources: {sorted(known)}"
            )
    unlisted_exist = known is None or bool(known - set(source_weights))
    top = max([*source_weights.values(), *([1.0] if unlisted_exist else [])])
    if top <= 0:
        raise DataSpecError("source_weights: every source has weight 0; nothing to sample")
    return {s: w / top for s, w in source_weights.items()} | {DEFAULT_KEY: 1.0 / top}


class ShardTrainStream(IterableDataset):
    """Endless resampled shard stream cut into a fixed number of batches per rank and epoch.

    Args:
        urls: shard URLs.
        transform: PIL RGB -> list[Tensor] (the views).
        batch_size: cells per batch.
        batches: batches per epoch on this rank (split over the DataLoader workers).
        shuffle_buffer: samples held per worker for shuffling (undecoded bytes).
        source_weights: relative per-cell weight by source.
        known_sources: sources of the data (for checking ``source_weights``), if known.
        seed: base seed; the stream of (rank, worker, epoch) is fixed by it.
        rank: this process's global rank.
        world_size: number of ranks.
    """

    def __init__(
        self,
        urls: list[str],
        transform: Callable[[Any], Any],
        batch_size: int,
        batches: int,
        shuffle_buffer: int = 1000,
        source_weights: dict[str, float] | None = None,
        known_sources: set[str] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.urls = list(urls)
        self.transform = transform
        self.batch_size = int(batch_size)
        self.batches = int(batches)
        self.shuffle_buffer = int(shuffle_buffer)
        self.accept = source_accept(source_weights, known_sources)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self._iterations = 0  # local count: advances the stream with persistent workers

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int) -> None:
        """Seed the next pass with ``epoch`` (called by :class:`EpochLoader`)."""
        self.epoch = int(epoch)

    def _samples(self, rng: random.Random, seed: int) -> Iterator[dict]:
        shards = wds.ResampledShards(self.urls, seed=seed, worker_seed=lambda: 0, deterministic=True)
        idle = 0
        for sample in wds.tarfile_samples(iter(shards), handler=wds.warn_and_continue):
            if self.accept is not None:
                try:
                    src = json.loads(sample["json"]).get("source")
                except (KeyError, ValueError):
                    src = None
                if rng.random() >= self.accept.get(src, self.accept[DEFAULT_KEY]):
                    idle += 1
                    if idle > MAX_IDLE_SAMPLES:
                        raise RuntimeError(
                            f"{MAX_IDLE_SAMPLES} samples in a row rejected by source_weights; check the weights"
                        )
                    continue
            idle = 0
            yield sample

    def __iter__(self) -> Iterator[list[Any]]:
        worker, n_workers = current_worker()
        quota = self.batches // n_workers + (1 if worker < self.batches % n_workers else 0)
        seed = mix_seed(self.seed, self.rank, worker, self.epoch, self._iterations)
        self._iterations += 1
        if quota == 0:
            return
        rng = random.Random(seed)
        buffer: list[dict] = []
        batch: list[Any] = []
        made = 0
        failed = 0
        for sample in self._samples(rng, seed):
            buffer.append(sample)
            if len(buffer) < self.shuffle_buffer:
                continue
            j = rng.randrange(len(buffer))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            picked = buffer.pop()
            decoded = decode_sample(picked)
            if decoded is None:
                failed += 1
                if failed > MAX_IDLE_SAMPLES:
                    raise RuntimeError(f"{failed} unreadable samples in a row in {self.urls[:3]}...")
                continue
            failed = 0
            batch.append(self.transform(decoded[0]))
            if len(batch) == self.batch_size:
                yield collate_views(batch)
                batch = []
                made += 1
                if made >= quota:
                    return


class CatalogTrainDataset(Dataset):
    """Map-style training dataset over image files (a corrupt image is replaced by the next cell).

    Args:
        paths: image files, in catalog order.
        transform: PIL RGB -> list[Tensor] (the views).
    """

    def __init__(self, paths: list[str], transform: Callable[[Any], Any]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        for k in range(min(len(self.paths), 100)):
            img = read_rgb(self.paths[(i + k) % len(self.paths)])
            if img is not None:
                return self.transform(img)
        raise RuntimeError(f"100 unreadable images in a row from {self.paths[i]}; check the data")


class FixedLengthSampler(DistributedSampler):
    """Seeded sampler giving every rank exactly ``num_samples`` indices per epoch.

    Unweighted: the epoch's seeded permutations of all indices (as many as needed) are dealt to the
    ranks in turn (``rank::world_size``). Weighted: ``num_samples * world_size`` draws with
    replacement (``torch.multinomial``), dealt the same way. Subclassing ``DistributedSampler``
    keeps Lightning from wrapping it; Lightning calls :meth:`set_epoch`.

    Args:
        n: number of items.
        num_samples: indices per rank and epoch.
        rank: this process's global rank.
        world_size: number of ranks.
        seed: base seed (with the epoch, it fixes the indices).
        weights: relative per-item weights (None: uniform, without replacement within a pass).
    """

    def __init__(
        self,
        n: int,
        num_samples: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        weights: list[float] | None = None,
    ) -> None:
        # DistributedSampler.__init__ is not called: it needs a dataset and an initialised process
        # group; the attributes Lightning and DistributedSampler.set_epoch read are set here.
        self.n = int(n)
        self.num_samples = int(num_samples)
        self.rank = int(rank)
        self.num_replicas = int(world_size)
        self.seed = int(seed)
        self.epoch = 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.shuffle = True
        self.drop_last = True
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, self.epoch))
        if self.weights is not None:
            idx = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        else:
            reps = math.ceil(self.total_size / self.n)
            idx = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[: self.total_size]
        return iter(idx[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class EpochLoader(DataLoader):
    """DataLoader that tells its dataset the epoch (``epoch_fn()``) before each pass.

    Args:
        *args: as for ``DataLoader``.
        epoch_fn: returns the current epoch (default: the number of passes so far).
        **kwargs: as for ``DataLoader``.
    """

    def __init__(self, *args: Any, epoch_fn: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_fn = epoch_fn
        self._passes = 0

    def __iter__(self) -> Any:
        epoch = self._epoch_fn() if self._epoch_fn is not None else self._passes
        self._passes += 1
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        return super().__iter__()


def train_loader(
    res: ResolvedData,
    transform: Callable[[Any], Any],
    batch_size: int,
    batches: int,
    num_workers: int = 0,
    shuffle_buffer: int = 1000,
    source_weights: dict[str, float] | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    epoch_fn: Callable[[], int] | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """The training loader of resolved data: exactly ``batches`` batches of ``batch_size`` per pass.

    Args:
        res: the resolved training data.
        transform: PIL RGB -> list[Tensor] (the views).
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

    Returns:
        An :class:`EpochLoader` over a :class:`ShardTrainStream` (shards), or a ``DataLoader`` over a
        :class:`CatalogTrainDataset` with a :class:`FixedLengthSampler` (catalogs and folders).
    """
    if res.kind == "shards":
        ds = ShardTrainStream(
            res.urls,
            transform,
            batch_size,
            batches,
            shuffle_buffer=shuffle_buffer,
            source_weights=source_weights,
            known_sources=set(res.sources) if res.sources else None,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        return EpochLoader(
            ds,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            epoch_fn=epoch_fn,
        )
    assert res.catalog is not None
    rows = catalog_rows(res.catalog)
    weights = None
    accept = source_accept(source_weights, {r["source"] for r in rows})
    if accept is not None:
        weights = [accept.get(r["source"], accept[DEFAULT_KEY]) for r in rows]
    sampler = FixedLengthSampler(
        len(rows), batches * batch_size, rank=rank, world_size=world_size, seed=seed, weights=weights
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        CatalogTrainDataset([row_path(r) for r in rows], transform),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        collate_fn=collate_views,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
    )
