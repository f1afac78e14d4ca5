"""Embed every cell of shards or a folder with a backbone: the library side of ``ssl-cyto embed``.

Writes an embedding folder (:mod:`ssl_cyto.formats.embeddings`) into ``out_dir``; when the model is
a ``.ckpt`` or a backbone name, ``out_dir/backbone/`` also holds the exact weights used.

**Order.** Rows are sorted by ``cell_id`` (ascending, Python string order), whatever the data
loader's order (which for shards depends on the number of workers). Every cell appears once.

**Nothing is dropped silently.** Every cell asked for and not embedded (an undecodable image, the
unreadable rest of a truncated shard) is counted in ``embed.json["counts"]`` (``expected``,
``unreadable_or_missing``) and listed in ``EMB_DIR/missing.csv`` (``cell_id, path, cells,
reason``; ``cell_id`` is empty for a shard's unreadable rest, whose ``cells`` says how many).
Images with a side under 16 px or over 4096 px are embedded and listed in
``embed.json["odd_size"]``. ``ssl-cyto embed`` prints ``N of M`` and exits 3 unless
``--allow-missing``.

**Resuming** (:mod:`ssl_cyto.embedding.chunks`). A rerun with the same model and data continues:
catalog/folder data are filtered to the cells not yet embedded before anything is read; for shards
the completed cells are read again but not re-embedded. A rerun with a different model or data is
refused unless ``overwrite=True``.

Forward passes run under ``torch.no_grad()`` with automatic mixed precision on CUDA (bfloat16
where supported, else float16); features are stored as float32.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ssl_cyto.data.loading import ResolvedData, eval_loader, resolve_data
from ssl_cyto.embedding import chunks as ck
from ssl_cyto.embedding.encoder import Encoder, resolve_device
from ssl_cyto.embedding.errors import EmbedError, ModelMismatchError
from ssl_cyto.embedding.parts import parse_part, select_part
from ssl_cyto.formats.catalog import CATALOG_COLUMNS
from ssl_cyto.formats.embeddings import (
    BACKBONE_DIR,
    INDEX_FILE,
    INDEX_JSON,
    INDEX_META,
    write_embedding_folder,
)
from ssl_cyto.formats.model_json import MODEL_JSON_VERSION
from ssl_cyto.formats.progress import progress_bar
from ssl_cyto.formats.provenance import hardware_summary

__all__ = ["MISSING_FILE", "ORDER", "EmbedError", "ModelMismatchError", "embed", "resolve_device"]

ORDER = "rows sorted by cell_id (ascending, Python string order)"
TMP_BACKBONE = ".backbone-tmp"
MISSING_FILE = "missing.csv"  # the cells asked for and not embedded
MISSING_COLUMNS = ["cell_id", "path", "cells", "reason"]
#: cells.parquet's columns: the catalog's, and the 64-bit image hash (serve's exact-match look-up): the
#: one pack stored for shards, computed by the loader for a folder (whose full hashes go to
#: ``image_hashes.parquet`` for probe and dedup, :func:`ssl_cyto.embedding.chunks.merge_hashes`).
EMBED_COLUMNS = [*CATALOG_COLUMNS, "phash"]
ODD_SIZE_LISTED = 1000  # odd-size images listed by name in embed.json (all are counted)


def _drop(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)


@dataclass
class _Plan:
    """What this run reads: the loader input, the cells expected in all and to read now."""

    source: Any
    expected: int | None
    to_read: int | None


def _plan(res: ResolvedData, limit: int | None, done: set[str]) -> _Plan:
    if res.kind == "catalog":
        assert res.catalog is not None
        cat = res.catalog if limit is None else res.catalog.iloc[:limit]
        todo = cat[~cat["cell_id"].isin(done)] if done else cat
        return _Plan(todo, len(cat), len(todo))
    n = res.n_cells
    expected = n if limit is None else min(limit, n or limit)
    return _Plan(res, expected, expected)


@dataclass
class _Tally:
    seen: int = 0  # cells met in loader order (for limit on shard streams)
    skipped_done: int = 0
    embedded: int = 0


def _new_cells(
    loader: Iterable[tuple[Any, list[dict]]],
    streamed: bool,
    done: set[str],
    limit: int | None,
    tally: _Tally,
    bar: Any,
) -> Iterator[tuple[Any, list[dict]]]:
    """The batches of ``loader`` minus cells already embedded and cells past ``limit`` (shards)."""
    for images, rows in loader:
        if streamed:
            keep, skipped = [], 0
            for i, row in enumerate(rows):
                if limit is not None and tally.seen >= limit:
                    break
                tally.seen += 1
                if row["cell_id"] in done:
                    skipped += 1
                else:
                    keep.append(i)
            tally.skipped_done += skipped
            if bar is not None:
                bar.update(len(keep) + skipped)
            if len(keep) < len(rows):
                images, rows = images[keep], [rows[i] for i in keep]
        elif bar is not None:
            bar.update(len(rows))
        yield images, rows
        if streamed and limit is not None and tally.seen >= limit:
            return


def _data_location(data: str, res: ResolvedData) -> dict[str, Any]:
    """Where the cells were read from (``data_path``, ``shards``), for ``serve`` to find the images."""
    local = Path(data).exists()
    shards = None
    if res.kind == "shards" and res.urls and not any(u.startswith("pipe:") or "://" in u for u in res.urls):
        parents = {str(Path(u).resolve().parent) for u in res.urls}
        shards = parents.pop() if len(parents) == 1 else None
    return {"data_path": str(Path(data).resolve()) if local else None, "shards": shards}


def _write_missing(out: Path, skipped: list[dict]) -> str | None:
    """Write ``out/missing.csv`` (the cells not embedded), or remove a stale one; returns its name."""
    path = out / MISSING_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    frame = pd.DataFrame([{c: s.get(c) for c in MISSING_COLUMNS} for s in skipped], columns=MISSING_COLUMNS)
    frame.to_csv(path, index=False)
    return MISSING_FILE


def _counts_by(cells: pd.DataFrame, column: str, dropna: bool) -> dict[str, int]:
    counts = cells[column].value_counts(dropna=dropna).sort_index()
    return {str(k): int(v) for k, v in counts.items()}


@dataclass
class _Run:
    """One run of :func:`embed`: its output folder, encoder, fingerprint and partial-chunk folder."""

    out: Path
    encoder: Encoder
    fp: dict[str, Any]
    partial: Path
    t_start: float


def _open_run(model: str, data: str, out: Path, opts: dict[str, Any]) -> _Run | None:
    """Load the model, check the folder (None: already complete), commit its backbone, start ``.partial``."""
    t_start = time.perf_counter()
    tmp_backbone = out / TMP_BACKBONE
    encoder = Encoder.load(
        model,
        device=opts["device"],
        out_dir=tmp_backbone,
        seed=opts["seed"],
        input_size=opts["input_size"],
        weights=opts["weights"],
        trust_weights=opts["trust_weights"],
    )
    fp = ck.fingerprint(encoder.meta, data, opts["limit"])
    if opts["part"] is not None:
        fp["part"] = list(opts["part"])
    try:
        complete = ck.check_existing(out, fp, opts["overwrite"])
    except ModelMismatchError:
        _drop(tmp_backbone)
        raise
    if complete:
        _drop(tmp_backbone)
        return None  # already complete with this model and data
    if opts["overwrite"]:
        ck.clear_outputs(out)
        (out / MISSING_FILE).unlink(missing_ok=True)
    if tmp_backbone.exists():  # commit the backbone of a .ckpt / name
        final = out / BACKBONE_DIR
        _drop(final)
        os.replace(tmp_backbone, final)
        encoder.folder = final.resolve()
    partial = out / ck.PARTIAL
    ck.write_state(partial, fp)
    return _Run(out, encoder, fp, partial, t_start)


def _embed_cells(
    run: _Run, res: ResolvedData, data_plan: _Plan, done: set[str], opts: dict[str, Any]
) -> tuple[_Tally, Any]:
    """Embed the cells still to do into partial chunks; returns the tally and the loader (its skips)."""
    columns = EMBED_COLUMNS
    tally = _Tally()
    chunk_index = len(ck.completed_chunks(run.partial))
    bar = progress_bar(total=data_plan.to_read, desc="embed", unit="cell") if opts["progress"] else None
    loader: Any = []
    if data_plan.to_read != 0 or res.kind != "catalog":
        loader = eval_loader(
            data_plan.source,
            run.encoder.transform,
            batch_size=opts["batch_size"],
            num_workers=opts["num_workers"],
            hashes=res.kind == "catalog",  # shards carry pack's hashes
        )
    feats: list[np.ndarray] = []
    rows: list[dict] = []
    n_batches = 0
    on_chunk = opts["on_chunk"]
    try:
        for images, batch_rows in _new_cells(loader, res.kind != "catalog", done, opts["limit"], tally, bar):
            if batch_rows:
                feats.append(run.encoder.forward(images))
                rows.extend(batch_rows)
                tally.embedded += len(batch_rows)
                n_batches += 1

                ck.write_chunk(run.partial, chunk_index, feats, rows, columns)
                if on_chunk is not None:
                    on_chunk(chunk_index)
                chunk_index += 1
                feats, rows, n_batches = [], [], 0
        if rows:
            ck.write_chunk(run.partial, chunk_index, feats, rows, columns)
            if on_chunk is not None:
                on_chunk(chunk_index)
    finally:  # the bar ends before an interruption is reported
        if bar is not None:
            bar.close()
    return tally, loader


def _model_record(model: str, run: _Run) -> dict[str, Any]:
    """``embed.json["model"]``: a backbone inside the folder is recorded relative to it (a copied folder
    keeps working), one outside by its absolute path."""
    meta, folder = run.encoder.meta, run.encoder.folder
    path: str | None = None if folder is None else str(folder)
    if folder is not None and folder.resolve().is_relative_to(run.out.resolve()):
        path = str(folder.resolve().relative_to(run.out.resolve()))
    return {
        "spec": str(model),
        "path": path,
        "architecture": meta.get("architecture"),
        "weights_sha256": meta.get("weights_sha256"),
        "input_size": meta.get("input_size"),
        "random_init": bool(meta.get("random_init", False)),
        "source": meta.get("source"),
    }


def _record(
    model: str, data: str, run: _Run, res: ResolvedData, counts: dict[str, Any], opts: dict[str, Any]
) -> dict[str, Any]:
    """The ``embed.json`` of a finished run."""
    dev, amp = run.encoder.device, run.encoder.amp
    seconds = time.perf_counter() - run.t_start
    part = {"part": list(opts["part"])} if opts["part"] is not None else {}
    return {
        "format_version": MODEL_JSON_VERSION,
        **part,
        "model": _model_record(model, run),
        "data": data,
        "data_kind": res.kind,
        **_data_location(data, res),
        "fingerprint": run.fp,
        "order": ORDER,
        "options": {
            "batch_size": opts["batch_size"],
            "num_workers": opts["num_workers"],
            "device": dev,
            "device_name": torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda") else "cpu",
            "amp": str(amp).replace("torch.", "") if amp is not None else None,
            "limit": opts["limit"],
            "seed": opts["seed"],
            "chunk_batches": opts["chunk_batches"],
        },
        "counts": counts,
        "timing": {
            "seconds": round(seconds, 2),
            "cells_per_second_this_run": round(counts["embedded_this_run"] / seconds, 2)
            if seconds > 0
            else None,
        },
        "hardware": hardware_summary(),
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }


def _finish(model: str, data: str, run: _Run, res: ResolvedData, data_plan: _Plan, state: tuple) -> None:
    """Assemble the chunks into the embedding folder, write missing.csv and embed.json, drop stale files."""
    tally, loader, resumed, opts = state
    skipped: list[dict] = list(getattr(loader, "skipped", []))
    odd_size: list[dict] = list(getattr(loader, "odd_size", []))
    columns = EMBED_COLUMNS
    try:
        vectors, cells = ck.assemble(run.out, ck.completed_chunks(run.partial), columns)
    except EmbedError:
        _write_missing(run.out, skipped)
        raise
    n = len(cells)
    missing = None if data_plan.expected is None else max(0, data_plan.expected - n)
    listed = _write_missing(run.out, skipped) if (missing or skipped) else None
    counts = {
        "cells": n,
        "dim": int(vectors.shape[1]),
        "expected": data_plan.expected,
        "unreadable_or_missing": missing,
        "missing_list": listed,
        "odd_size": len(odd_size),
        "resumed_from_chunks": resumed,
        "embedded_this_run": tally.embedded,
        "by_source": _counts_by(cells, "source", dropna=True),
        "by_label": _counts_by(cells, "label", dropna=False),
    }
    record = _record(model, data, run, res, counts, opts)
    record["odd_size"] = odd_size[:ODD_SIZE_LISTED]
    write_embedding_folder(run.out, vectors, cells, dict(run.encoder.meta), record)
    del vectors
    ck.merge_hashes(run.out, ck.completed_chunks(run.partial))
    shutil.rmtree(run.partial)
    # an index over older embeddings of this folder would now be stale
    for stale in (INDEX_FILE, INDEX_META, INDEX_JSON):
        (run.out / stale).unlink(missing_ok=True)


def embed(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    limit: int | None = None,
    seed: int = 0,
    input_size: int | None = None,
    chunk_batches: int = 50,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    weights: str | os.PathLike | None = None,
    trust_weights: bool = False,
    part: tuple[int, int] | str | None = None,
) -> Path:
    """Embed every cell of ``data`` with ``model`` into ``out_dir`` (see the module docstring).

    Args:
        model: an exported backbone folder, its ``model.json``, a training ``.ckpt``, released weights
            (``resnet18.a1_in1k``, ``hf-hub:ORG/NAME``, ``local-dir:PATH``) or a timm / ``tiny_cnn``
            name (seeded random weights); a ``.ckpt``'s or a name's backbone is saved into
            ``out_dir/backbone``.
        data: shards, a shard pattern, a catalog.parquet, an image folder or ``synth:<layout>``
            (anything :func:`ssl_cyto.data.loading.eval_loader` reads).
        out_dir: the embedding folder to write.
        batch_size: cells per forward pass.
        num_workers: data-loading worker processes.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        limit: embed only the first ``limit`` cells in loader order (catalog order for folders).
        seed: seed of the random weights when ``model`` is a name.
        input_size: input size for a model given by name (default: the backbone's default).
        chunk_batches: batches per partial chunk (the resume granularity).
        overwrite: replace existing outputs / partial results of another model or data.
        progress: tqdm progress bar on stderr.
        on_chunk: called with the chunk index after each chunk is written (progress hooks, tests).
        weights: a local weights file for a ``model`` given by name (instead of random weights).
        trust_weights: allow a ``weights`` pickle that ``torch.load(weights_only=True)`` refuses.
        part: ``(I, N)`` or ``"I/N"``: embed only part I of N (:mod:`ssl_cyto.embedding.parts`; merge
            the parts with :func:`ssl_cyto.embedding.parts.merge_parts`).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ModelMismatchError: ``out_dir`` holds embeddings of another model/data and not ``overwrite``.
        EmbedError: bad options or nothing to embed.
    """
    if batch_size < 1 or chunk_batches < 1:
        raise EmbedError(f"batch_size ({batch_size}) and chunk_batches ({chunk_batches}) must be >= 1")
    if limit is not None and limit < 1:
        raise EmbedError(f"limit must be >= 1, got {limit}")
    opts: dict[str, Any] = {
        "batch_size": batch_size, "num_workers": num_workers, "device": device, "limit": limit,
        "seed": seed, "input_size": input_size, "chunk_batches": chunk_batches, "overwrite": overwrite,
        "progress": progress, "on_chunk": on_chunk, "weights": weights, "trust_weights": trust_weights,
        "part": parse_part(part) if isinstance(part, str) else part,
    }  # fmt: skip
    data = str(data)
    out = Path(out_dir)
    resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    run = _open_run(str(model), data, out, opts)
    if run is None:
        return out
    done = ck.done_cell_ids(ck.completed_chunks(run.partial))
    res = resolve_data(data)
    if opts["part"] is not None:
        res = select_part(res, limit, opts["part"])  # a catalog part has the limit applied already
    data_plan = _plan(res, None if opts["part"] is not None and res.kind == "catalog" else limit, done)
    tally, loader = _embed_cells(run, res, data_plan, done, opts)
    _finish(str(model), data, run, res, data_plan, (tally, loader, len(done), opts))
    return out
