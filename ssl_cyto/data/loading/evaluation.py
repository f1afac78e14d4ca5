"""Loading for evaluation: every cell exactly once (:func:`eval_loader`), and the labelled subset.

* **eval** (:func:`eval_loader`, used by embedding): every cell exactly once, split disjointly and
  completely across ranks and workers, as ``(images, rows)`` batches.
* **val** (:func:`pick_labelled`, :class:`LabelledSubset`, :class:`RankShareSampler`, used by the
  online kNN of :class:`~ssl_cyto.data.datamodule.CellDataModule`): a fixed, seeded, labelled subset;
  each rank gets a disjoint share (``rank::world_size``, no padding), so gathering across ranks gives
  every cell exactly once.

**Nothing is dropped silently.** The eval stream counts what it cannot read instead of warning
mid-progress-bar: an undecodable cell, a sample without image or json, and a truncated or unreadable
shard (its cells short of the count in ``index.json``) each become an entry of
:attr:`EvalLoader.skipped`; images with a side under 16 px or over 4096 px are embedded and listed
in :attr:`EvalLoader.odd_size`. The entries travel with the batches, so they are complete with any
number of DataLoader workers.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.distributed import DistributedSampler

from ssl_cyto.data.image_hash import image_hash
from ssl_cyto.data.images import size_problem
from ssl_cyto.data.loading.decode import (
    check_file,
    check_sample,
    decode_rgb,
    decode_sample,
    image_key,
    read_rgb,
    row_path,
)
from ssl_cyto.data.loading.resolve import DataSpecError, ResolvedData, resolve_data
from ssl_cyto.data.loading.seeding import current_worker
from ssl_cyto.formats.catalog import catalog_rows
from ssl_cyto.formats.shard_index import key_to_cell_id

LabelledItem = tuple[str | bytes, int, str]  # (image path or bytes, label index, name for messages)
_STREAM_REPR = re.compile(r"\s*@?\s*<[\w.]+ (?:name=[^>]*|object at 0x[0-9a-fA-F]+)>")
Report = dict[str, list[dict]]  # {"skipped": [...], "odd_size": [...]} carried by each batch


def _empty_report() -> Report:
    return {"skipped": [], "odd_size": []}


def _skip(cell_id: str | None, path: str, reason: str, cells: int = 1) -> dict:
    return {"cell_id": cell_id, "path": path, "cells": int(cells), "reason": reason}


class ReadErrors:
    """A WebDataset handler that records each read error (a truncated tar...) and carries on."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, exn: BaseException) -> bool:
        text = _STREAM_REPR.sub("", str(exn)).strip() or "unreadable"
        self.errors.append(f"{type(exn).__name__}: {text}")
        return True


class RankShareSampler(DistributedSampler):
    """Indices ``rank::world_size`` in order, without padding (each index on exactly one rank).

    Args:
        n: number of items.
        rank: this process's global rank.
        world_size: number of ranks.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        # DistributedSampler.__init__ is not called (it needs an initialised process group).
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

    Args:
        items: ``(path or bytes, label index, name)`` per cell.
        transform: PIL RGB -> Tensor.
    """

    def __init__(self, items: list[LabelledItem], transform: Callable[[Any], Any]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        src, label, name = self.items[i]
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        return self.transform(decode_rgb(data, name=name)), label


def pick_labelled(res: ResolvedData, n: int, seed: int = 0) -> tuple[list[str], list[LabelledItem]]:
    """A fixed, seeded subset of ``n`` labelled cells that decode (fewer if the data has fewer).

    Catalogs: the labelled rows in a seeded shuffle; shards: the shards in a seeded shuffle, their
    samples in tar order. Cells without a label or whose image does not decode are passed over.

    Returns:
        ``(classes, items)``: the sorted class names and ``(path or bytes, class index, name)`` items.
    """
    picked: list[tuple[str | bytes, str, str]] = []  # (source, label, name)
    if res.kind == "catalog":
        assert res.catalog is not None
        rows = [r for r in catalog_rows(res.catalog) if r.get("label") is not None]
        random.Random(seed).shuffle(rows)
        for r in rows:
            path = row_path(r)
            if read_rgb(path) is not None:
                picked.append((path, str(r["label"]), path))
            if len(picked) == n:
                break
    else:
        urls = list(res.urls)
        random.Random(seed).shuffle(urls)
        src = ({"url": u} for u in urls)
        for sample in wds.tarfile_samples(src, handler=wds.warn_and_continue):
            try:
                label = json.loads(sample["json"]).get("label")
            except (KeyError, ValueError):
                continue
            if label is None or decode_sample(sample) is None:
                continue
            ext = image_key(sample)
            name = f"{sample['__url__']}:{sample['__key__']}.{ext}"
            picked.append((bytes(sample[ext]), str(label), name))  # type: ignore[index]
            if len(picked) == n:
                break
    classes = sorted({p[1] for p in picked})
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, [(src, lookup[label], name) for src, label, name in picked]


class ShardEvalStream(IterableDataset):
    """Every cell of the shards once: shard ``i`` goes to global worker ``i % (world_size * workers)``.

    Global worker ``g = rank * workers + worker``; it reads its shards in ascending index and their
    samples in tar order, yielding ``(Tensor[B, ...] | None, rows, report)`` batches (last one
    partial); ``report`` lists the cells skipped since the previous batch (see the module docstring).

    Args:
        urls: shard URLs in index order.
        transform: PIL RGB -> Tensor.
        batch_size: cells per batch.
        rank: this process's rank.
        world_size: number of ranks.
        num_workers: DataLoader workers the stream will run in (0 counts as 1).
        counts: cells per shard from ``index.json`` (a shard that yields fewer is counted short).
    """

    def __init__(
        self,
        urls: list[str],
        transform: Callable[[Any], Any],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        counts: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.urls = list(urls)
        self.transform = transform
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.num_workers = max(1, int(num_workers))
        self.counts = list(counts) if counts is not None and len(counts) == len(self.urls) else None

    def my_shards(self, worker: int) -> list[tuple[str, int | None]]:
        """``(url, expected cells or None)`` of the shards read by ``worker`` of this rank."""
        total = self.world_size * self.num_workers
        g = self.rank * self.num_workers + worker
        return [
            (u, None if self.counts is None else self.counts[i])
            for i, u in enumerate(self.urls)
            if i % total == g
        ]

    def my_urls(self, worker: int) -> list[str]:
        """The shards read by ``worker`` of this rank."""
        return [u for u, _ in self.my_shards(worker)]

    def __iter__(self) -> Iterator[tuple[Any, list[dict], Report]]:
        worker, n_workers = current_worker()
        if n_workers != self.num_workers:
            raise RuntimeError(f"ShardEvalStream built for {self.num_workers} workers, run with {n_workers}")
        items: list[tuple[Any, dict]] = []
        report = _empty_report()
        for url, expected in self.my_shards(worker):
            errors = ReadErrors()
            met = 0
            for sample in wds.tarfile_samples(iter([{"url": url}]), handler=errors):
                met += 1
                decoded = check_sample(sample)
                if isinstance(decoded, str):
                    key = sample.get("__key__")
                    report["skipped"].append(_skip(key_to_cell_id(key) if key else None, url, decoded))
                    continue
                img, row = decoded
                odd = size_problem(*img.size)
                if odd is not None:
                    report["odd_size"].append({"cell_id": row.get("cell_id"), "path": url, "reason": odd})
                items.append((self.transform(img), row))
                if len(items) == self.batch_size:
                    yield _batch(items, report)
                    items, report = [], _empty_report()
            short = 0 if expected is None else expected - met
            if short > 0 or errors.errors:
                why = errors.errors[0] if errors.errors else "fewer samples than index.json lists"
                if short > 0:
                    why = f"{short} of {expected} cells unreadable (truncated or corrupt shard: {why})"
                report["skipped"].append(_skip(None, url, why, cells=max(short, 0)))
        if items or report["skipped"] or report["odd_size"]:
            yield _batch(items, report)


def _batch(items: list[tuple[Any, dict]], report: Report) -> tuple[Any, list[dict], Report]:
    if not items:
        return None, [], report
    return torch.stack([it[0] for it in items]), [it[1] for it in items], report


class CatalogEvalDataset(Dataset):
    """Catalog rows for eval: items are ``(eval tensor | None, row, note)``.

    ``note`` is None, the reason an unreadable image was skipped (tensor None), or the size warning of
    an image under 16 px or over 4096 px on a side.

    Args:
        rows: catalog rows (:func:`ssl_cyto.formats.catalog.catalog_rows`).
        transform: PIL RGB -> Tensor.
        hashes: also hash each image as it is decoded (:func:`ssl_cyto.data.image_hash.image_hash`,
            a few ms a cell): the row gets ``phash`` and ``image_hash`` (the stored bytes), which
            ``ssl-cyto embed`` keeps so that probe and dedup need not decode the image again.
    """

    def __init__(self, rows: list[dict], transform: Callable[[Any], Any], hashes: bool = False) -> None:
        self.rows = rows
        self.transform = transform
        self.hashes = bool(hashes)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Any, dict, str | None]:
        row = self.rows[i]
        img = check_file(row_path(row))
        if isinstance(img, str):
            return None, row, img
        if self.hashes:
            h = image_hash(img)
            row = {**row, "phash": h.phash, "image_hash": h.to_bytes()}
        return self.transform(img), row, size_problem(*img.size)


def collate_catalog(items: list[tuple[Any, dict, str | None]]) -> tuple[Any, list[dict], Report]:
    """Items of :class:`CatalogEvalDataset` -> ``(Tensor[B, ...] | None, rows, report)``."""
    report = _empty_report()
    kept: list[tuple[Any, dict]] = []
    for tensor, row, note in items:
        path = row_path(row)
        if tensor is None:
            report["skipped"].append(_skip(row.get("cell_id"), path, str(note)))
            continue
        if note is not None:
            report["odd_size"].append({"cell_id": row.get("cell_id"), "path": path, "reason": note})
        kept.append((tensor, row))
    return _batch(kept, report)


class EvalLoader:
    """Iterable of ``(images: Tensor[B, 3, H, W], rows: list[dict])``; what could not be read is counted.

    Attributes:
        dataloader: the underlying ``torch.utils.data.DataLoader``.
        kind: ``"shards"`` or ``"catalog"``.
        n_cells: cells this rank will read (before skipping unreadable ones), if known.
        skipped: ``{"cell_id" (None for a shard's unreadable rest), "path", "cells", "reason"}`` per
            cell (or shard part) not read so far.
        odd_size: ``{"cell_id", "path", "reason"}`` per image under 16 px or over 4096 px on a side.
    """

    def __init__(self, dataloader: DataLoader, kind: str, n_cells: int | None) -> None:
        self.dataloader = dataloader
        self.kind = kind
        self.n_cells = n_cells
        self.skipped: list[dict] = []
        self.odd_size: list[dict] = []

    @property
    def n_skipped(self) -> int:
        """Cells not read so far (a truncated shard counts its missing cells)."""
        return sum(int(s.get("cells", 1)) for s in self.skipped)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[dict]]]:
        self.skipped, self.odd_size = [], []
        for batch in self.dataloader:
            if batch is None:
                continue
            images, rows, report = batch
            self.skipped.extend(report["skipped"])
            self.odd_size.extend(report["odd_size"])
            if rows:
                yield images, rows


def eval_loader(
    data: str | os.PathLike | ResolvedData | pd.DataFrame,
    transform: Callable[[Any], Any],
    batch_size: int = 64,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    hashes: bool = False,
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

    Unreadable images are skipped and counted (:attr:`EvalLoader.skipped`), not warned about.

    Args:
        data: any ``data`` form of :func:`resolve_data`, a :class:`ResolvedData` or a catalog DataFrame.
        transform: PIL RGB -> Tensor (e.g. the backbone's eval transform).
        batch_size: cells per batch (the last batch of a worker may be smaller).
        num_workers: DataLoader workers.
        rank: this process's rank.
        world_size: number of ranks.
        hashes: catalog / folder data: hash each image where it is decoded (rows get ``phash`` and
            ``image_hash``, see :class:`CatalogEvalDataset`); shards carry the hashes pack stored.

    Returns:
        An :class:`EvalLoader`.

    Raises:
        DataSpecError: ``rank`` is not in ``[0, world_size)``, or ``data`` matches no accepted form.
    """
    if not 0 <= rank < world_size:
        raise DataSpecError(f"rank {rank} is not in [0, {world_size})")
    if isinstance(data, pd.DataFrame):
        res = ResolvedData("catalog", "<DataFrame>", catalog=data)
    elif isinstance(data, ResolvedData):
        res = data
    else:
        res = resolve_data(data)
    if res.kind == "shards":
        ds = ShardEvalStream(
            res.urls, transform, batch_size, rank, world_size, num_workers, counts=res.counts
        )
        n = None
        if res.counts is not None:
            per_rank = max(1, num_workers)
            total = world_size * per_rank
            n = sum(c for i, c in enumerate(res.counts) if (i % total) // per_rank == rank)
        return EvalLoader(DataLoader(ds, batch_size=None, num_workers=num_workers), "shards", n)
    assert res.catalog is not None
    rows = catalog_rows(res.catalog)
    lo, hi = rank * len(rows) // world_size, (rank + 1) * len(rows) // world_size
    loader = DataLoader(
        CatalogEvalDataset(rows[lo:hi], transform, hashes=hashes),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_catalog,
    )
    return EvalLoader(loader, "catalog", hi - lo)
