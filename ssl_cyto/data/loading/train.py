"""Training streams: every rank gets the same, fixed number of batches per epoch, and every draw is a
pure function of its position, so a resumed run is the uninterrupted run.

* Shards (:class:`ShardTrainStream`): the shards are read in a seeded permutation per pass (the
  *global stream*, pass after pass). An epoch is a range of it, cut into one contiguous range per rank
  and, within a rank, per DataLoader worker; each (rank, worker) reads only its range and shuffles it
  with a bounded buffer. With the shard counts of ``index.json`` the cut goes below shard level, so one
  epoch reads every cell at most once and leaves out fewer cells than one global batch. Without counts
  (remote shards) whole shards are dealt to the ``ranks x workers`` readers, which needs at least as
  many shards as readers. ``continuous=True`` (the data module sets it when ``batches_per_epoch`` is
  given) lets epoch ``e + 1`` go on where epoch ``e`` stopped, so every cell is seen once before any is
  seen twice; otherwise each epoch starts a fresh pass.
* Folders and catalogs (:class:`CatalogTrainDataset`): a map-style dataset with the seeded
  :class:`FixedLengthSampler` (a ``DistributedSampler`` subclass, so Lightning leaves it alone) over
  the same kind of global stream of permutations.

The CPU views of sample ``i`` of epoch ``e`` are drawn under
:func:`ssl_cyto.data.loading.seeding.sample_seed` (``i``: the sample key for shards, the position in
the epoch for catalogs), whichever worker draws them. After a restart both streams skip the batches
the checkpoint says were consumed (:meth:`ShardTrainStream.resume_at`,
:meth:`FixedLengthSampler.resume_at`; the data module restores them). A skipped shard sample is not
decoded, so shards with corrupt samples (``ssl-cyto pack`` verifies them) could shift a resumed worker
by the number of corrupt samples it skipped.

A batch is ``list[Tensor]``: one stacked tensor per view of the task's ``train_transform``; no labels.

Per-source sampling weights (``source_weights``) are relative per-cell weights: a cell of source ``s``
is drawn with probability proportional to ``source_weights.get(s, 1.0)``. For example
``{"aml-lmu": 9.0}`` makes AML-LMU (about 10% of the combined cells) about half of the samples. With
shard counts, acceptance is decided once per cell and pass before the stream is split
(:mod:`ssl_cyto.data.loading.acceptance`), so each accepted cell is read by exactly one reader; without
counts each reader rejects cells of its own dealt shards (seeded draw per sample key). The sampler of
catalogs makes weighted draws.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from ssl_cyto.data.loading.acceptance import (
    DEFAULT_KEY,
    AcceptedPool,
    say_pool_short,
    scan_shard,
    source_accept,
)
from ssl_cyto.data.loading.catalog_train import CatalogTrainDataset, FixedLengthSampler
from ssl_cyto.data.loading.decode import collate_views, decode_sample
from ssl_cyto.data.loading.resolve import DataSpecError
from ssl_cyto.data.loading.seeding import (
    current_worker,
    mix_seed,
    sample_seed,
    seeded,
)

__all__ = [
    "CatalogTrainDataset",
    "EpochLoader",
    "FixedLengthSampler",
    "ShardTrainStream",
    "source_accept",
]

MAX_IDLE_SAMPLES = 100_000  # a train stream gives up after this many samples in a row yield nothing


def worker_quotas(batches: int, n_workers: int) -> list[int]:
    """Batches of each DataLoader worker when ``batches`` are dealt round-robin (worker ``j % n``)."""
    return [batches // n_workers + (1 if w < batches % n_workers else 0) for w in range(n_workers)]


def resumed_slot(worker: int, n_workers: int, done: int) -> tuple[int, int]:
    """``(slot, batches of it already consumed)`` that ``worker`` plays after ``done`` batches.

    Batch ``j`` of an epoch is the ``j // n``-th batch of slot ``j % n``. The DataLoader asks worker 0
    first, so after a restart at batch ``done`` worker ``w`` plays slot ``(done + w) % n``: the batches
    then come in the uninterrupted order.
    """
    slot = (done + worker) % n_workers
    return slot, len(range(slot, done, n_workers))


def bounded_shuffle(src: Iterator[Any], n_range: int, size: int, rng: random.Random) -> Iterator[Any]:
    """Shuffle the first ``n_range`` items of ``src`` with a buffer of ``size`` and yield exactly them
    (draining the buffer at the end of the range), then go on the same way past the range."""
    buf: list[Any] = []
    taken = 0
    while True:
        while len(buf) < size and taken < n_range:
            buf.append(next(src))
            taken += 1
        if not buf:
            n_range += size
            continue
        j = rng.randrange(len(buf))
        buf[j], buf[-1] = buf[-1], buf[j]
        yield buf.pop()


class ShardTrainStream(IterableDataset):
    """Shards split across ranks and workers by a seeded permutation, cut into a fixed number of batches.

    Args:
        urls: shard URLs.
        transform: PIL RGB -> list[Tensor] (the views).
        batch_size: cells per batch.
        batches: batches per epoch on this rank (dealt round-robin over the DataLoader workers).
        shuffle_buffer: samples held per worker for shuffling (undecoded bytes).
        source_weights: relative per-cell weight by source.
        known_sources: sources of the data (for checking ``source_weights``), if known.
        seed: base seed; the stream of (epoch, rank, worker) is fixed by it.
        rank: this process's global rank.
        world_size: number of ranks.
        counts: cells per shard (``index.json``); None splits whole shards between the readers.
        continuous: epoch ``e + 1`` continues the global stream where epoch ``e`` stopped (else each
            epoch starts a fresh pass).

    Raises:
        DataSpecError: (when iterated, counts unknown) fewer shards than ranks x workers.
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
        counts: list[int] | None = None,
        continuous: bool = False,
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
        self.counts = None if counts is None or len(counts) != len(self.urls) else [int(c) for c in counts]
        self.continuous = bool(continuous)
        self.pool: AcceptedPool | None = None
        if self.accept is not None and self.counts is not None:
            self.pool = AcceptedPool([scan_shard(u) for u in self.urls], self.accept, self.seed)
            epoch_len = self.batches * self.batch_size * self.world_size
            if self.rank == 0 and self.pool.total(0) < epoch_len:
                say_pool_short(self.pool.total(0), epoch_len)
        self.epoch = 0
        self._passes = 0  # passes since set_epoch: persistent workers keep their copy and count on
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int) -> None:
        """Seed the next pass with ``epoch`` (called by :class:`EpochLoader`)."""
        self.epoch = int(epoch)
        self._passes = 0

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches when epoch ``epoch`` is read next (a restart)."""
        self._resume = (int(epoch), int(batches_done))

    # ---- the global stream -------------------------------------------------------------------------
    def _perm(self, *parts: int) -> list[int]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, "shards", *parts))
        return torch.randperm(len(self.urls), generator=g).tolist()

    def _tar(self, urls: list[str]) -> Iterator[dict]:
        return wds.tarfile_samples(iter({"url": u} for u in urls), handler=wds.warn_and_continue)

    def _from_position(self, pos: int) -> Iterator[dict]:
        """Samples of the global stream from position ``pos`` on (shard counts known)."""
        assert self.counts is not None
        n = sum(self.counts)
        p, offset = divmod(pos, n)
        while True:
            perm = self._perm(p)
            cum = list(itertools.accumulate(self.counts[i] for i in perm))
            q = bisect.bisect_right(cum, offset)
            skip = offset - (cum[q - 1] if q else 0)
            for k, sample in enumerate(self._tar([self.urls[i] for i in perm[q:]])):
                if k >= skip:
                    yield sample
            p, offset = p + 1, 0

    def _accepted_from(self, pos: int) -> Iterator[dict]:
        """Samples of the accepted stream from position ``pos`` on (shard counts and weights known):
        the accepted cells of each pass's shard permutation, tagged with their pass."""
        assert self.pool is not None
        p, offset = self.pool.locate(pos)
        while True:
            perm = self._perm(p)
            q, skip = self.pool.plan(p, perm, offset)
            for i in perm[q:]:
                keys = set(self.pool.accepted_keys(p, i))
                seen = 0
                for sample in self._tar([self.urls[i]]) if keys else ():
                    if sample.get("__key__") in keys:
                        if seen >= skip:
                            sample["__pass__"] = p
                            yield sample
                        seen += 1
                skip = 0
            p, offset = p + 1, 0

    def _dealt_shards(self, epoch: int, reader: int, readers: int) -> Iterator[dict]:
        """Whole shards ``perm[reader::readers]`` of seeded permutations (shard counts unknown)."""
        if len(self.urls) < readers:
            raise DataSpecError(
                f"{len(self.urls)} shard(s) for {readers} readers ({self.world_size} rank(s) x "
                f"{readers // self.world_size} worker(s)): without index.json the shards are split whole, "
                "so use fewer data.num_workers or devices, or pack into more shards (or keep index.json)"
            )
        for k in itertools.count():
            yield from self._tar([self.urls[i] for i in self._perm(epoch, k)[reader::readers]])

    def _accepted(self, sample: dict, epoch: int) -> bool:
        if self.accept is None:
            return True
        try:
            src = json.loads(sample["json"]).get("source")
        except (KeyError, ValueError):
            src = None
        draw = mix_seed(self.seed, "accept", epoch, str(sample.get("__key__"))) / 2.0**63
        return draw < self.accept.get(src, self.accept[DEFAULT_KEY])

    def reader_samples(self, epoch: int, worker: int, n_workers: int) -> Iterator[dict]:
        """Undecoded samples of one (rank, worker slot) in one epoch, in their order (an endless stream:
        its first ``quota x batch_size`` come from the slot's own range)."""
        quotas = worker_quotas(self.batches, n_workers)
        if self.counts is not None:
            epoch_len = self.batches * self.batch_size * self.world_size
            mine = self.batch_size * (self.rank * self.batches + sum(quotas[:worker]))
            if self.pool is not None:
                first = epoch * epoch_len if self.continuous else self.pool.pass_start(epoch)
                src = self._accepted_from(first + mine)
            else:
                src = self._from_position(epoch * (epoch_len if self.continuous else sum(self.counts)) + mine)
        else:
            src = self._dealt_shards(epoch, self.rank * n_workers + worker, self.world_size * n_workers)
        rng = random.Random(mix_seed(self.seed, "buffer", epoch, self.rank, worker))
        idle = 0
        for sample in bounded_shuffle(src, quotas[worker] * self.batch_size, self.shuffle_buffer, rng):
            if self.pool is not None or self._accepted(sample, epoch):
                idle = 0
                yield sample
                continue
            idle += 1
            if idle > MAX_IDLE_SAMPLES:
                raise RuntimeError(
                    f"{MAX_IDLE_SAMPLES} samples in a row rejected by source_weights; check the weights"
                )

    def __iter__(self) -> Iterator[list[Any]]:
        worker, n_workers = current_worker()
        epoch = self.epoch + self._passes
        self._passes += 1
        done = 0
        if self._resume is not None and self._resume[0] <= epoch:
            done = self._resume[1] if self._resume[0] == epoch else 0
            self._resume = None
        slot, skip = resumed_slot(worker, n_workers, done)
        quota = worker_quotas(self.batches, n_workers)[slot]
        if quota <= skip:
            return
        batch: list[Any] = []
        made, pending, failed = 0, 0, 0
        for sample in self.reader_samples(epoch, slot, n_workers):
            if made < skip:  # consumed before the restart: counted, not decoded
                pending += 1
                if pending == self.batch_size:
                    made, pending = made + 1, 0
                continue
            decoded = decode_sample(sample)
            if decoded is None:
                failed += 1
                if failed > MAX_IDLE_SAMPLES:
                    raise RuntimeError(f"{failed} unreadable samples in a row in {self.urls[:3]}...")
                continue
            failed = 0
            key = str(sample.get("__key__"))
            if "__pass__" in sample and sample["__pass__"] != epoch:  # a repeat in a later pass: new views
                key = f"{key}#{sample['__pass__']}"
            with seeded(sample_seed(self.seed, epoch, key)):
                batch.append(self.transform(decoded[0]))
            if len(batch) == self.batch_size:
                yield collate_views(batch)
                batch = []
                made += 1
                if made >= quota:
                    return


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
