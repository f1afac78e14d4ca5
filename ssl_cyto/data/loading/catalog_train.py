"""Training over a catalog or image folder: a map-style dataset and a fixed-length seeded sampler
(the shard stream is in :mod:`ssl_cyto.data.loading.train`, which re-exports both)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from ssl_cyto.data.loading.decode import read_rgb
from ssl_cyto.data.loading.seeding import mix_seed, sample_seed, seeded


class CatalogTrainDataset(Dataset):
    """Map-style training dataset over image files (a corrupt image is replaced by the next cell).

    Items are ``(index, seed)`` pairs from :class:`FixedLengthSampler`: the views are drawn under
    ``seed`` (a plain index draws from the worker's own RNG).

    Args:
        paths: image files, in catalog order.
        transform: PIL RGB -> list[Tensor] (the views).
    """

    def __init__(self, paths: list[str], transform: Callable[[Any], Any]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        i, seed = item if isinstance(item, tuple) else (item, None)
        for k in range(min(len(self.paths), 100)):
            img = read_rgb(self.paths[(i + k) % len(self.paths)])
            if img is not None:
                if seed is None:
                    return self.transform(img)
                with seeded(seed):
                    return self.transform(img)
        raise RuntimeError(f"100 unreadable images in a row from {self.paths[i]}; check the data")


class FixedLengthSampler(DistributedSampler):
    """Seeded sampler giving every rank exactly ``num_samples`` ``(index, seed)`` items per epoch.

    Unweighted: a global stream of seeded permutations of all indices (pass after pass); epoch ``e``
    is its range from ``e x total`` (``continuous``: every cell once before any twice) or from the
    start of pass ``e x passes per epoch``, dealt to the ranks in turn (``rank::world_size``).
    Weighted: ``num_samples * world_size`` draws with replacement (``torch.multinomial``), dealt the
    same way. The seed of an item is :func:`~ssl_cyto.data.loading.seeding.sample_seed` of its position
    in the epoch. Subclassing ``DistributedSampler`` keeps Lightning from wrapping it; Lightning calls
    :meth:`set_epoch`.

    Args:
        n: number of items.
        num_samples: indices per rank and epoch.
        rank: this process's global rank.
        world_size: number of ranks.
        seed: base seed (with the epoch, it fixes the indices).
        weights: relative per-item weights (None: uniform, without replacement within a pass).
        continuous: epochs continue the stream of permutations (see above).
    """

    def __init__(
        self,
        n: int,
        num_samples: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        weights: list[float] | None = None,
        continuous: bool = False,
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
        self.continuous = bool(continuous)
        self.shuffle = True
        self.drop_last = True
        self.total_size = self.num_samples * self.num_replicas
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples_done: int) -> None:
        """Skip this rank's first ``samples_done`` items when epoch ``epoch`` is read next (a restart)."""
        self._resume = (int(epoch), int(samples_done))

    def _pass(self, p: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, p)))

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """All ranks' indices of one epoch, in draw order."""
        if self.weights is not None:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            return torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        passes = math.ceil(self.total_size / self.n)
        start = epoch * (self.total_size if self.continuous else passes * self.n)
        first, last = start // self.n, (start + self.total_size - 1) // self.n
        idx = torch.cat([self._pass(p) for p in range(first, last + 1)])
        return idx[start - first * self.n :][: self.total_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        done = 0
        if self._resume is not None and self._resume[0] <= self.epoch:
            done = self._resume[1] if self._resume[0] == self.epoch else 0
            self._resume = None
        idx = self.epoch_indices(self.epoch).tolist()
        positions = range(self.rank, self.total_size, self.num_replicas)[done:]
        return iter([(idx[p], sample_seed(self.seed, self.epoch, p)) for p in positions])

    def __len__(self) -> int:
        return self.num_samples
