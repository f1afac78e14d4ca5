"""Loading cells for training, online kNN and embedding: :class:`CellDataModule` and :func:`eval_loader`.

``data`` (and ``val_data``) may be any of:

* a shard folder (``index.json`` and/or ``cells-*.tar``, written by ``ssl-cyto pack``);
* a brace pattern or glob of shards (``shards/cells-{000000..000189}.tar``, ``shards/cells-*.tar``);
* a ``pipe:`` URL or a remote URL WebDataset can open (``pipe:aws s3 cp s3://b/cells-{000000..000189}.tar -``);
* a ``catalog.parquet`` or an image folder of any source layout (read with
  :func:`ssl_cyto.data.catalog.catalog_from_path`);
* ``synth:<layout>[:<per_class>]`` - generated cells, made once with
  :func:`ssl_cyto.data.synth.ensure_cached`.

Three modes:

* **train** (:meth:`CellDataModule.train_dataloader`): shards are streamed with WebDataset's
  resampling shard sampler (``wds.ResampledShards``, i.e. ``WebDataset(resampled=True)``; each
  (rank, worker) draws its own seeded shard sequence, so no explicit node/worker split is needed and
  no rank can run dry), through a per-worker shuffle buffer, and cut into exactly
  ``batches_per_epoch`` batches per rank and epoch (the same number on every rank, so no DDP rank
  waits for another). Folders and catalogs use a map-style dataset with a seeded fixed-length sampler
  (a ``DistributedSampler`` subclass, so Lightning leaves it alone). A batch is ``list[Tensor]``: one
  stacked tensor per view of the task's ``train_transform``; no labels.
* **val** (:meth:`CellDataModule.val_dataloader`): ``(images, labels)`` over a fixed, seeded,
  labelled subset of ``val_size`` cells (from ``val_data`` or ``data``), transformed with the task's
  ``eval_transform``; ``datamodule.val_classes`` names the label indices. Each rank gets a disjoint
  share (``rank::world_size``, no padding), so gathering across ranks gives every cell exactly once.
* **eval** (:func:`eval_loader`): every cell exactly once, split disjointly and completely across
  ranks and workers, as ``(images, rows)`` batches.

Corrupt images met at read time are skipped with a warning naming the file (never a crash).

Per-source sampling weights (``source_weights``, both train modes) are relative per-cell weights:
a cell of source ``s`` is drawn with probability proportional to ``source_weights.get(s, 1.0)``. For
example ``{"aml-lmu": 9.0}`` makes AML-LMU (about 10% of the combined cells) about half of the
samples. Shard streams apply them by rejection before decoding (accept with ``w_s / max w``).

This module imports only the standard library at import time; the torch / Lightning classes are
built on first access (``from ssl_cyto.data.datamodule import CellDataModule`` works as usual).
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.data.shards import INDEX_NAME, is_shard_dir, read_index

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")
_MAX_IDLE_SAMPLES = 100_000  # a train stream gives up after this many samples in a row yield nothing


class DataSpecError(ValueError):
    """A ``data`` argument that cannot be resolved; the message lists the accepted forms."""


DATA_FORMS = (
    "a shard folder (index.json / cells-*.tar), a brace pattern or glob of .tar shards, a pipe: URL, "
    "a catalog.parquet, an image folder, or synth:<layout>[:<per_class>]"
)


# ------------------------------------------------------------------------------------- resolution
@dataclass
class ResolvedData:
    """What a ``data`` string points at.

    Attributes:
        kind: ``"shards"`` or ``"catalog"``.
        spec: the original string.
        urls: shard URLs/paths in index order (shards only).
        counts: cells per shard where known (from index.json), else None.
        sources: cells per source where known.
        catalog: the catalog DataFrame (catalog only).
    """

    kind: str
    spec: str
    urls: list[str] = field(default_factory=list)
    counts: list[int] | None = None
    sources: dict[str, int] | None = None
    catalog: pd.DataFrame | None = None

    @property
    def n_cells(self) -> int | None:
        """Number of cells, or None when unknown (remote shards without index.json)."""
        if self.kind == "catalog":
            assert self.catalog is not None
            return len(self.catalog)
        return None if self.counts is None else sum(self.counts)


def _index_for(urls: list[str]) -> tuple[list[int] | None, dict[str, int] | None]:
    """Counts of local shards from the index.json beside them (None if absent or not all listed)."""
    if not urls or any(u.startswith("pipe:") or "://" in u for u in urls):
        return None, None
    parent = Path(urls[0]).parent
    if not (parent / INDEX_NAME).is_file() or any(Path(u).parent != parent for u in urls):
        return None, None
    index = read_index(parent)
    by_name = {s["name"]: s["count"] for s in index["shards"]}
    names = [Path(u).name for u in urls]
    if any(n not in by_name for n in names):
        return None, None
    counts = [by_name[n] for n in names]
    sources = index.get("sources") if len(names) == len(by_name) else None
    return counts, sources


def resolve_data(data: str | os.PathLike) -> ResolvedData:
    """Resolve a ``data`` string (see the module docstring for the accepted forms).

    Raises:
        DataSpecError: the string matches no accepted form.
        FileNotFoundError: a local path does not exist.
    """
    spec = str(data)
    if spec.startswith("synth:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise DataSpecError(f"{spec!r}: expected synth:<layout>[:<per_class>], e.g. synth:bm-mll:20")
        from ssl_cyto.data.catalog import catalog_from_path
        from ssl_cyto.data.synth import ensure_cached

        if len(parts) == 3:
            try:
                per_class = int(parts[2])
            except ValueError:
                raise DataSpecError(f"{spec!r}: per_class must be an integer") from None
            root = ensure_cached(parts[1], per_class=per_class)
        else:
            root = ensure_cached(parts[1])
        return ResolvedData("catalog", spec, catalog=catalog_from_path(root))
    if spec.startswith("pipe:") or "://" in spec:
        from webdataset.shardlists import expand_urls

        return ResolvedData("shards", spec, urls=expand_urls(spec))
    if "{" in spec and ".." in spec:
        from webdataset.shardlists import expand_urls

        urls = expand_urls(spec)
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{spec}: {len(missing)} shard(s) of the pattern do not exist, e.g. {missing[0]}"
            )
        counts, sources = _index_for(urls)
        return ResolvedData("shards", spec, urls=urls, counts=counts, sources=sources)
    if any(c in spec for c in "*?["):
        urls = sorted(glob.glob(spec))
        if not urls:
            raise FileNotFoundError(f"{spec}: the pattern matches no file")
        counts, sources = _index_for(urls)
        return ResolvedData("shards", spec, urls=urls, counts=counts, sources=sources)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: not found; data must be {DATA_FORMS}")
    if path.is_dir() and is_shard_dir(path):
        from ssl_cyto.data.shards import shard_paths

        urls = [str(p) for p in shard_paths(path)]
        if (path / INDEX_NAME).is_file():
            index = read_index(path)
            counts = [s["count"] for s in index["shards"]]
            return ResolvedData("shards", spec, urls=urls, counts=counts, sources=index.get("sources"))
        return ResolvedData("shards", spec, urls=urls)
    if path.is_file() and path.suffix == ".tar":
        counts, sources = _index_for([spec])
        return ResolvedData("shards", spec, urls=[spec], counts=counts, sources=sources)
    if path.is_dir() or path.suffix == ".parquet":
        from ssl_cyto.data.catalog import catalog_from_path

        return ResolvedData("catalog", spec, catalog=catalog_from_path(path))
    raise DataSpecError(f"{spec}: not usable as data; data must be {DATA_FORMS}")


def _clean_rows(df: pd.DataFrame) -> list[dict]:
    from ssl_cyto.data.shards import _rows

    return _rows(df)


def _image_key(sample: dict) -> str | None:
    for k in IMAGE_KEYS:
        if k in sample:
            return k
    return None




def decode_rgb(data: bytes, name: str) -> Any:
    """Decode image bytes to PIL RGB with :func:`ssl_cyto.data.images.open_rgb` (errors name ``name``)."""
    return open_rgb(data, name=name)


def decode_sample(sample: dict) -> tuple[Any, dict] | None:
    """``(PIL RGB image, catalog row)`` of a WebDataset sample, or None (with a warning) if it is bad."""
    name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    ext = _image_key(sample)
    if ext is None or "json" not in sample:
        warnings.warn(f"{name}: sample without image or json ({sorted(sample)}); skipped", stacklevel=2)
        return None
    try:
        row = json.loads(sample["json"])
        img = decode_rgb(bytes(sample[ext]), name=f"{name}.{ext}")
    except (ImageDecodeError, ValueError) as exc:  # ValueError: bad json (decode or syntax)
        warnings.warn(f"{exc}; skipped", stacklevel=2)
        return None
    return img, row


def read_rgb(path: str | os.PathLike) -> Any | None:
    """Decode an image file, or return None with a warning naming the file."""
    try:
        return decode_rgb(Path(path).read_bytes(), name=str(path))
    except (ImageDecodeError, OSError) as exc:
        warnings.warn(f"{exc}; skipped", stacklevel=2)
        return None


def _source_accept(
    source_weights: dict[str, float] | None, known: set[str] | None
) -> dict[str, float] | None:
    """Per-source acceptance probabilities ``w_s / max w`` (None: accept everything).

    Unlisted sources have weight 1.0 (the key ``"__default__"`` of the result holds their probability).
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
    return {s: w / top for s, w in source_weights.items()} | {"__default__": 1.0 / top}


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    import hashlib

    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _worker() -> tuple[int, int]:
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def collate_views(samples: list[Any]) -> list[Any]:
    """Stack per-view tensors: ``[views of cell 0, views of cell 1, ...]`` -> one ``(B, ...)`` tensor per view.

    A transform that returns a single tensor counts as one view.
    """
    import torch

    if isinstance(samples[0], torch.Tensor):
        return [torch.stack(samples)]
    n_views = len(samples[0])
    return [torch.stack([s[v] for s in samples]) for v in range(n_views)]


def collate_eval(items: list[Any]) -> tuple[Any, list[dict]] | None:
    """``[(tensor, row) | None, ...]`` -> ``(Tensor[B, ...], rows)``, dropping failed reads (None if all failed)."""
    import torch

    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]), [it[1] for it in items]


# ---------------------------------------------------------------------- torch classes (built lazily)
_CLASSES: dict[str, type] = {}


_TORCH_NAMES = (
    "ShardTrainStream",
    "CatalogTrainDataset",
    "FixedLengthSampler",
    "RankShareSampler",
    "LabelledSubset",
    "ShardEvalStream",
    "CatalogEvalDataset",
    "EpochLoader",
)


def _register(classes: dict[str, type]) -> None:
    for name, cls in classes.items():
        cls.__qualname__ = name  # picklable as ssl_cyto.data.datamodule.<name>
        cls.__module__ = __name__
    _CLASSES.update(classes)
    globals().update(classes)


def _torch_classes() -> dict[str, type]:
    """Datasets, samplers and loaders (torch only; no Lightning import, so embedding starts fast)."""
    if "EpochLoader" in _CLASSES:
        return _CLASSES
    import torch
    from torch.utils.data import DataLoader, Dataset, IterableDataset
    from torch.utils.data.distributed import DistributedSampler

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
            rank: this process's global rank; world_size: number of ranks.
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
            self.accept = _source_accept(source_weights, known_sources)
            self.seed = int(seed)
            self.rank = int(rank)
            self.world_size = int(world_size)
            self.epoch = 0
            self._iterations = 0  # local count: advances the stream with persistent workers

        def __len__(self) -> int:
            return self.batches

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def _samples(self, rng: random.Random, seed: int) -> Iterator[dict]:
            import webdataset as wds

            shards = wds.ResampledShards(self.urls, seed=seed, worker_seed=lambda: 0, deterministic=True)
            idle = 0
            for sample in wds.tarfile_samples(iter(shards), handler=wds.warn_and_continue):
                if self.accept is not None:
                    try:
                        src = json.loads(sample["json"]).get("source")
                    except (KeyError, ValueError):
                        src = None
                    if rng.random() >= self.accept.get(src, self.accept["__default__"]):
                        idle += 1
                        if idle > _MAX_IDLE_SAMPLES:
                            raise RuntimeError(
                                f"{_MAX_IDLE_SAMPLES} samples in a row rejected by source_weights; check the weights"
                            )
                        continue
                idle = 0
                yield sample

        def __iter__(self) -> Iterator[list[Any]]:
            worker, n_workers = _worker()
            quota = self.batches // n_workers + (1 if worker < self.batches % n_workers else 0)
            seed = _mix_seed(self.seed, self.rank, worker, self.epoch, self._iterations)
            self._iterations += 1
            if quota == 0:
                return
            rng = random.Random(seed)
            buffer: list[dict] = []
            batch: list[Any] = []
            made = 0
            failed = 0
            stream = self._samples(rng, seed)
            for sample in stream:
                buffer.append(sample)
                if len(buffer) < self.shuffle_buffer:
                    continue
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                picked = buffer.pop()
                decoded = decode_sample(picked)
                if decoded is None:
                    failed += 1
                    if failed > _MAX_IDLE_SAMPLES:
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
        """Map-style training dataset over catalog rows (a corrupt image is replaced by the next cell)."""

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
            g.manual_seed(_mix_seed(self.seed, self.epoch))
            if self.weights is not None:
                idx = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
            else:
                reps = math.ceil(self.total_size / self.n)
                idx = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[: self.total_size]
            return iter(idx[self.rank :: self.num_replicas].tolist())

        def __len__(self) -> int:
            return self.num_samples

    class RankShareSampler(DistributedSampler):
        """Indices ``rank::world_size`` in order, without padding (each index on exactly one rank)."""

        def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
            self.n = int(n)
            self.rank = int(rank)
            self.num_replicas = int(world_size)
            self.epoch = 0
            self.shuffle = False
            self.drop_last = False
            self.num_samples = len(range(self.rank, self.n, self.num_replicas))
            self.total_size = self.n

        def __iter__(self) -> Iterator[int]:
            return iter(range(self.rank, self.n, self.num_replicas))

        def __len__(self) -> int:
            return self.num_samples

    class LabelledSubset(Dataset):
        """The validation subset: items are ``(eval_transform(image), label index)``.

        Each item is a path or the image bytes (from shards), checked to decode when the subset is built.
        """

        def __init__(
            self, items: list[tuple[str | bytes, int, str]], transform: Callable[[Any], Any]
        ) -> None:
            self.items = items
            self.transform = transform

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            src, label, name = self.items[i]
            data = src if isinstance(src, bytes) else Path(src).read_bytes()
            return self.transform(decode_rgb(data, name=name)), label

    class ShardEvalStream(IterableDataset):
        """Every cell of the shards once: shard ``i`` goes to global worker ``i % (world_size * workers)``.

        Global worker ``g = rank * workers + worker``; it reads its shards in ascending index and their
        samples in tar order, yielding ``(Tensor[B, ...], rows)`` batches (last one partial).
        """

        def __init__(
            self,
            urls: list[str],
            transform: Callable[[Any], Any],
            batch_size: int,
            rank: int = 0,
            world_size: int = 1,
            num_workers: int = 0,
        ) -> None:
            super().__init__()
            self.urls = list(urls)
            self.transform = transform
            self.batch_size = int(batch_size)
            self.rank = int(rank)
            self.world_size = int(world_size)
            self.num_workers = max(1, int(num_workers))

        def my_urls(self, worker: int) -> list[str]:
            total = self.world_size * self.num_workers
            g = self.rank * self.num_workers + worker
            return [u for i, u in enumerate(self.urls) if i % total == g]

        def __iter__(self) -> Iterator[tuple[Any, list[dict]]]:
            import webdataset as wds

            worker, n_workers = _worker()
            if n_workers != self.num_workers:
                raise RuntimeError(
                    f"ShardEvalStream built for {self.num_workers} workers, run with {n_workers}"
                )
            src = ({"url": u} for u in self.my_urls(worker))
            items: list[tuple[Any, dict]] = []
            for sample in wds.tarfile_samples(src, handler=wds.warn_and_continue):
                decoded = decode_sample(sample)
                if decoded is None:
                    continue
                items.append((self.transform(decoded[0]), decoded[1]))
                if len(items) == self.batch_size:
                    out = collate_eval(items)
                    items = []
                    yield out  # type: ignore[misc]
            if items:
                yield collate_eval(items)  # type: ignore[misc]

    class CatalogEvalDataset(Dataset):
        """Catalog rows for eval: items are ``(eval tensor, row)``, or None (warned) when unreadable."""

        def __init__(self, rows: list[dict], transform: Callable[[Any], Any]) -> None:
            self.rows = rows
            self.transform = transform

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[Any, dict] | None:
            row = self.rows[i]
            img = read_rgb(Path(row["root"]) / row["path"])
            return None if img is None else (self.transform(img), row)

    class EpochLoader(DataLoader):
        """DataLoader that tells its dataset the epoch (``epoch_fn()``) before each pass."""

        def __init__(self, *args: Any, epoch_fn: Callable[[], int] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._epoch_fn = epoch_fn
            self._passes = 0

        def __iter__(self) -> Any:
            epoch = self._epoch_fn() if self._epoch_fn is not None else self._passes
            self._passes += 1
            self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            return super().__iter__()

    _register(
        {
            "ShardTrainStream": ShardTrainStream,
            "CatalogTrainDataset": CatalogTrainDataset,
            "FixedLengthSampler": FixedLengthSampler,
            "RankShareSampler": RankShareSampler,
            "LabelledSubset": LabelledSubset,
            "ShardEvalStream": ShardEvalStream,
            "CatalogEvalDataset": CatalogEvalDataset,
            "EpochLoader": EpochLoader,
        }
    )
    return _CLASSES


def _build_classes() -> dict[str, type]:
    """All lazily built classes, including the Lightning :class:`CellDataModule`."""
    if "CellDataModule" in _CLASSES:
        return _CLASSES
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    t = _torch_classes()
    ShardTrainStream = t["ShardTrainStream"]
    CatalogTrainDataset = t["CatalogTrainDataset"]
    FixedLengthSampler = t["FixedLengthSampler"]
    RankShareSampler = t["RankShareSampler"]
    LabelledSubset = t["LabelledSubset"]
    EpochLoader = t["EpochLoader"]

    class CellDataModule(pl.LightningDataModule):
        """Cells for SSL pretraining (train), online kNN (val) and embedding (see :func:`eval_loader`).

        Args:
            data: shard folder / brace pattern / ``pipe:`` URL / image folder / ``catalog.parquet`` /
                ``synth:<layout>[:<per_class>]``.
            val_data: where the labelled validation subset comes from (default: ``data``).
            batch_size: cells per training batch (per device).
            num_workers: DataLoader worker processes.
            batches_per_epoch: training batches per epoch on every rank (default: cells //
                (batch_size * world_size), at least 1; required for remote shards without index.json).
            shuffle_buffer: samples held per worker for shuffling a shard stream.
            source_weights: relative per-cell sampling weight by source (unlisted sources: 1.0), e.g.
                ``{"aml-lmu": 9.0}``.
            val_size: cells in the labelled validation subset (0: no validation).
            val_batch_size: batch size for validation (default: ``batch_size``).
            seed: seeds the training stream, the sampler and the validation subset.
            pin_memory: DataLoader ``pin_memory``.
            persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        """

        def __init__(
            self,
            data: str,
            val_data: str | None = None,
            batch_size: int = 64,
            num_workers: int = 2,
            batches_per_epoch: int | None = None,
            shuffle_buffer: int = 1000,
            source_weights: dict[str, float] | None = None,
            val_size: int = 512,
            val_batch_size: int | None = None,
            seed: int = 0,
            pin_memory: bool = False,
            persistent_workers: bool = False,
        ) -> None:
            super().__init__()
            if batch_size < 1:
                raise DataSpecError(f"batch_size must be >= 1 (got {batch_size})")
            if batches_per_epoch is not None and batches_per_epoch < 1:
                raise DataSpecError(f"batches_per_epoch must be >= 1 (got {batches_per_epoch})")
            if num_workers < 0 or val_size < 0 or shuffle_buffer < 1:
                raise DataSpecError("num_workers and val_size must be >= 0, shuffle_buffer >= 1")
            self.save_hyperparameters()
            self.data = str(data)
            self.val_data = None if val_data is None else str(val_data)
            self.batch_size = int(batch_size)
            self.num_workers = int(num_workers)
            self.batches_per_epoch = batches_per_epoch
            self.shuffle_buffer = int(shuffle_buffer)
            self.source_weights = dict(source_weights) if source_weights else None
            self.val_size = int(val_size)
            self.val_batch_size = int(val_batch_size or batch_size)
            self.seed = int(seed)
            self.pin_memory = bool(pin_memory)
            self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
            self.train_transform: Callable[[Any], Any] | None = None  # override the task's transforms
            self.eval_transform: Callable[[Any], Any] | None = None
            self.val_classes: list[str] = []
            self._resolved: ResolvedData | None = None
            self._val_items: list[tuple[str | bytes, int, str]] | None = None

        # ---- helpers ------------------------------------------------------------------------
        @property
        def resolved(self) -> ResolvedData:
            """The resolved training data (resolved on first use)."""
            if self._resolved is None:
                self._resolved = resolve_data(self.data)
            return self._resolved

        def _rank_world(self) -> tuple[int, int]:
            trainer = self.trainer
            if trainer is not None:
                return int(trainer.global_rank), int(trainer.world_size)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                return torch.distributed.get_rank(), torch.distributed.get_world_size()
            return 0, 1

        def _task_transform(self, name: str) -> Callable[[Any], Any]:
            own = getattr(self, name)
            if own is not None:
                return own
            trainer = self.trainer
            module = getattr(trainer, "lightning_module", None) if trainer is not None else None
            transform = getattr(module, name, None)
            if transform is None:
                raise RuntimeError(
                    f"CellDataModule needs a {name}: attach it to a Trainer whose LightningModule has "
                    f"`.{name}`, or set datamodule.{name}"
                )
            return transform

        def _current_epoch(self) -> int:
            trainer = self.trainer
            return int(trainer.current_epoch) if trainer is not None else 0

        def train_batches(self, world_size: int | None = None) -> int:
            """Training batches per epoch on every rank."""
            if self.batches_per_epoch is not None:
                return int(self.batches_per_epoch)
            n = self.resolved.n_cells
            if n is None:
                raise DataSpecError(
                    f"{self.data}: the number of cells is unknown (no index.json); give batches_per_epoch"
                )
            world = self._rank_world()[1] if world_size is None else world_size
            return max(1, n // (self.batch_size * world))

        # ---- Lightning hooks ----------------------------------------------------------------
        def prepare_data(self) -> None:
            for spec in (self.data, self.val_data):
                if spec is not None and spec.startswith("synth:"):
                    resolve_data(spec)  # generates the cached cells once (rank 0)

        def setup(self, stage: str | None = None) -> None:
            _ = self.resolved
            if stage in (None, "fit", "validate") and self.val_size > 0 and self._val_items is None:
                self._build_val_subset()

        def _build_val_subset(self) -> None:
            res = resolve_data(self.val_data) if self.val_data is not None else self.resolved
            picked: list[tuple[str | bytes, str, str]] = []  # (source, label, name)
            if res.kind == "catalog":
                assert res.catalog is not None
                rows = [r for r in _clean_rows(res.catalog) if r.get("label") is not None]
                rng = random.Random(self.seed)
                rng.shuffle(rows)
                for r in rows:
                    path = str(Path(r["root"]) / r["path"])
                    if read_rgb(path) is not None:
                        picked.append((path, str(r["label"]), path))
                    if len(picked) == self.val_size:
                        break
            else:
                import webdataset as wds

                urls = list(res.urls)
                random.Random(self.seed).shuffle(urls)
                src = ({"url": u} for u in urls)
                for sample in wds.tarfile_samples(src, handler=wds.warn_and_continue):
                    try:
                        label = json.loads(sample["json"]).get("label")
                    except (KeyError, ValueError):
                        continue
                    if label is None:
                        continue
                    decoded = decode_sample(sample)
                    if decoded is None:
                        continue
                    ext = _image_key(sample)
                    name = f"{sample['__url__']}:{sample['__key__']}.{ext}"
                    picked.append((bytes(sample[ext]), str(label), name))  # type: ignore[index]
                    if len(picked) == self.val_size:
                        break
            if not picked:
                warnings.warn(
                    f"{self.val_data or self.data}: no labelled cells; online kNN is off", stacklevel=2
                )
            self.val_classes = sorted({p[1] for p in picked})
            lookup = {c: i for i, c in enumerate(self.val_classes)}
            self._val_items = [(src, lookup[label], name) for src, label, name in picked]

        def train_dataloader(self) -> Any:
            transform = self._task_transform("train_transform")
            rank, world = self._rank_world()
            res = self.resolved
            batches = self.train_batches(world)
            if res.kind == "shards":
                known = set(res.sources) if res.sources else None
                ds = ShardTrainStream(
                    res.urls,
                    transform,
                    self.batch_size,
                    batches,
                    shuffle_buffer=self.shuffle_buffer,
                    source_weights=self.source_weights,
                    known_sources=known,
                    seed=self.seed,
                    rank=rank,
                    world_size=world,
                )
                return EpochLoader(
                    ds,
                    batch_size=None,
                    num_workers=self.num_workers,
                    pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers,
                    epoch_fn=self._current_epoch,
                )
            assert res.catalog is not None
            rows = _clean_rows(res.catalog)
            weights = None
            accept = _source_accept(self.source_weights, {r["source"] for r in rows})
            if accept is not None:
                weights = [accept.get(r["source"], accept["__default__"]) for r in rows]
            sampler = FixedLengthSampler(
                len(rows),
                batches * self.batch_size,
                rank=rank,
                world_size=world,
                seed=self.seed,
                weights=weights,
            )
            sampler.set_epoch(self._current_epoch())  # Lightning calls set_epoch again at each epoch
            paths = [str(Path(r["root"]) / r["path"]) for r in rows]
            return DataLoader(
                CatalogTrainDataset(paths, transform),
                batch_size=self.batch_size,
                sampler=sampler,
                drop_last=True,
                collate_fn=collate_views,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
            )

        def val_dataloader(self) -> Any:
            if self.val_size == 0:
                return []
            if self._val_items is None:
                self._build_val_subset()
            assert self._val_items is not None
            if not self._val_items:
                return []
            rank, world = self._rank_world()
            ds = LabelledSubset(self._val_items, self._task_transform("eval_transform"))
            return DataLoader(
                ds,
                batch_size=self.val_batch_size,
                sampler=RankShareSampler(len(ds), rank, world),
                num_workers=min(self.num_workers, 2),
                pin_memory=self.pin_memory,
            )

    _register({"CellDataModule": CellDataModule})
    return _CLASSES


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return _torch_classes()[name]
    if name == "CellDataModule":
        return _build_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------ eval
class EvalLoader:
    """Iterable of ``(images: Tensor[B, 3, H, W], rows: list[dict])``; batches whose cells all failed are dropped.

    Attributes:
        dataloader: the underlying ``torch.utils.data.DataLoader``.
        kind: ``"shards"`` or ``"catalog"``.
        n_cells: cells this rank will read (before skipping unreadable ones), if known.
    """

    def __init__(self, dataloader: Any, kind: str, n_cells: int | None) -> None:
        self.dataloader = dataloader
        self.kind = kind
        self.n_cells = n_cells

    def __iter__(self) -> Iterator[tuple[Any, list[dict]]]:
        for batch in self.dataloader:
            if batch is not None:
                yield batch


def eval_loader(
    data: str | os.PathLike | ResolvedData | pd.DataFrame,
    transform: Callable[[Any], Any],
    batch_size: int = 64,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> EvalLoader:
    """Every cell of ``data`` exactly once, split disjointly and completely across ranks and workers.

    Order:
        * shards: global worker ``g = rank * max(1, num_workers) + worker`` reads the shards ``i`` with
          ``i % (world_size * max(1, num_workers)) == g`` in ascending ``i``, their samples in tar order
          (the packer's seeded shuffle); the DataLoader interleaves the workers' batches. The order
          within a rank therefore depends on ``num_workers``: sort by ``cell_id`` for a fixed order.
        * catalog / folder: rank ``r`` reads the contiguous rows
          ``[r * n // world_size, (r + 1) * n // world_size)`` in catalog order, and the DataLoader keeps
          that order for any ``num_workers``.

    Unreadable images are skipped with a warning naming the file.

    Args:
        data: any ``data`` form of :func:`resolve_data`, a :class:`ResolvedData` or a catalog DataFrame.
        transform: PIL RGB -> Tensor (e.g. the backbone's eval transform).
        batch_size: cells per batch (the last batch of a worker may be smaller).
        num_workers: DataLoader workers.
        rank: this process's rank; world_size: number of ranks.

    Returns:
        An :class:`EvalLoader`.
    """
    import pandas as pd
    from torch.utils.data import DataLoader

    classes = _torch_classes()
    if not 0 <= rank < world_size:
        raise DataSpecError(f"rank {rank} is not in [0, {world_size})")
    if isinstance(data, pd.DataFrame):
        res = ResolvedData("catalog", "<DataFrame>", catalog=data)
    elif isinstance(data, ResolvedData):
        res = data
    else:
        res = resolve_data(data)
    if res.kind == "shards":
        ds = classes["ShardEvalStream"](res.urls, transform, batch_size, rank, world_size, num_workers)
        n = None
        if res.counts is not None:
            per_rank = max(1, num_workers)
            total = world_size * per_rank
            n = sum(c for i, c in enumerate(res.counts) if (i % total) // per_rank == rank)
        loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
        return EvalLoader(loader, "shards", n)
    assert res.catalog is not None
    rows = _clean_rows(res.catalog)
    lo, hi = rank * len(rows) // world_size, (rank + 1) * len(rows) // world_size
    ds = classes["CatalogEvalDataset"](rows[lo:hi], transform)
    loader = DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_eval
    )
    return EvalLoader(loader, "catalog", hi - lo)
