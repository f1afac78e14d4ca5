"""Pack a cell catalog into WebDataset shards, resumable after a kill.

``ssl-cyto pack --catalog catalog.parquet --out shards/`` writes (names: :mod:`ssl_cyto.formats.shard_index`)::

    shards/cells-000000.tar  cells-000001.tar ...   WebDataset shards (POSIX tar, PAX headers)
    shards/index.json                               counts, bytes, sha256, options, skipped cells
    shards/image_hashes.parquet                     each cell's perceptual image hash (dedup, probe)
    shards/.pack/options.json, .pack/cells-%06d.json  resume state (one sidecar per finished shard)

Each sample holds the image (``.jpg``, ``.png`` or ``.webp``) and ``.json`` (the cell's catalog row,
``null`` where a value is unknown, plus ``phash``: the 64-bit DCT hash of the image as packed, 16 hex
characters), keyed by :func:`~ssl_cyto.formats.shard_index.cell_key`. The near-duplicate hashes
(:mod:`ssl_cyto.data.image_hash`) are computed here, once, while each image is decoded, on the image
as packed (:mod:`ssl_cyto.formats.image_hashes`).

Packing rules (see ``docs/shards.md``; one cell and one shard: :mod:`ssl_cyto.data.shard_writer`):

* the catalog is shuffled across sources with a fixed seed (``numpy.random.default_rng(seed)``) and
  cut into shards of ``shard_size`` cells, so every shard mixes sources and the cells of shard ``i``
  are fixed by the seed alone (the result does not depend on the number of workers);
* bad cells are skipped and listed in ``index.json["skipped"]``; the job never stops for one bad cell;
  images under 16 px or over 4096 px on a side are packed and listed in ``index.json["odd_size"]``;
* ``out_dir`` must be new, empty, or a folder this function packed before: a folder holding an
  ``index.json`` of its own (not written by pack) or shards without pack state is refused, and a
  refused pack leaves nothing behind (no ``.pack/``, no created folder);
* ``image_size`` resizes the shorter side (every image is then re-encoded as ``fmt``);
  ``target_um_per_px`` resamples cells of known physical scale (catalog column ``um_per_px`` or the
  per-source override ``um_per_px={source: x}``) to a common scale; sources of unknown scale are
  left as they are, with a warning naming them;
* a rerun after a kill re-checks finished shards (size and sha256 against the sidecar), removes
  partial files and packs only what is missing, byte-identical to an uninterrupted pack. A rerun
  with other options or another catalog is refused (:class:`PackOptionsMismatch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto import __version__
from ssl_cyto.data import shard_writer
from ssl_cyto.data.images import DEFAULT_BACKGROUND
from ssl_cyto.data.scanning import catalog_from_path
from ssl_cyto.formats.catalog import CATALOG_COLUMNS, REQUIRED_COLUMNS, catalog_rows, read_catalog
from ssl_cyto.formats.errors import InputError, MissingInputError, OutputError
from ssl_cyto.formats.image_hashes import HASHES_FILE, read_hashes, write_hashes
from ssl_cyto.formats.progress import progress_bar
from ssl_cyto.formats.shard_index import (
    DEFAULT_SHARD_SIZE,
    IMAGE_FORMATS,
    INDEX_FORMAT,
    INDEX_NAME,
    INDEX_VERSION,
    KEY_ENCODING,
    SHARD_GLOB,
    STATE_DIR,
    shard_name,
    write_index,
)

FORMATS = IMAGE_FORMATS
OPTIONS_NAME = "options.json"


class PackError(InputError):
    """Bad input to :func:`pack` (catalog, options or output folder); the message says the fix."""


class PackOptionsMismatch(PackError):
    """A rerun into an existing shard folder with different options or a different catalog."""


def load_catalog(catalog: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """A catalog DataFrame from a DataFrame, a ``catalog.parquet`` or an image folder of any source layout.

    Missing optional columns (label, reannot1, reannot2, um_per_px, sha256) are added as null.

    Raises:
        PackError: missing required columns, duplicate ``cell_id`` or an empty catalog.
        MissingInputError: the path does not exist.
    """
    if isinstance(catalog, pd.DataFrame):
        df = catalog.copy()
        origin = "catalog DataFrame"
    else:
        path = Path(catalog)
        origin = str(path)
        if not path.exists():
            raise MissingInputError(f"{path}: catalog not found; create it with `ssl-cyto data scan`")
        df = read_catalog(path) if path.is_file() else catalog_from_path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise PackError(f"{origin}: missing column(s) {missing}; a catalog needs {CATALOG_COLUMNS}")
    for col in CATALOG_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if len(df) == 0:
        raise PackError(f"{origin}: the catalog is empty; nothing to pack")
    dup = df["cell_id"][df["cell_id"].duplicated()]
    if len(dup):
        raise PackError(f"{origin}: duplicate cell_id(s), e.g. {list(dup[:3])}; cell ids must be unique")
    return df.reset_index(drop=True)


def catalog_fingerprint(rows: list[dict]) -> str:
    """sha256 over the sorted (cell_id, sha256) pairs: identifies the catalog's content, not its root."""
    h = hashlib.sha256()
    for cid, sha in sorted((r["cell_id"], r.get("sha256") or "") for r in rows):
        h.update(f"{cid}\t{sha}\n".encode())
    return h.hexdigest()


def parse_um_per_px(items: dict[str, float] | list[str] | None) -> dict[str, float]:
    """``["aml-lmu=0.1", ...]`` (or a dict) -> ``{"aml-lmu": 0.1}``.

    Raises:
        PackError: an item is not ``SOURCE=X`` with a positive X.
    """
    if items is None:
        return {}
    if isinstance(items, dict):
        return {str(k): float(v) for k, v in items.items()}
    out: dict[str, float] = {}
    for item in items:
        src, sep, val = item.rpartition("=")
        try:
            if not sep or not src:
                raise ValueError
            out[src] = float(val)
        except ValueError:
            raise PackError(f"--um-per-px {item!r}: expected SOURCE=X, e.g. aml-lmu=0.1") from None
        if out[src] <= 0:
            raise PackError(f"--um-per-px {item!r}: the scale must be positive")
    return out


def _check_options(shard_size: int, image_size: int | None, fmt: str, target_um_per_px: float | None) -> None:
    if fmt not in FORMATS:
        raise PackError(f"format {fmt!r} is not supported; choose one of {', '.join(FORMATS)}")
    if shard_size < 1:
        raise PackError(f"shard_size must be >= 1 (got {shard_size})")
    if image_size is not None and image_size < 1:
        raise PackError(f"image_size must be >= 1 (got {image_size})")
    if image_size is not None and target_um_per_px is not None:
        raise PackError(
            "image_size and target_um_per_px both resize; choose one (a common physical scale, "
            "or a common pixel size)"
        )
    if target_um_per_px is not None and target_um_per_px <= 0:
        raise PackError(f"target_um_per_px must be positive (got {target_um_per_px})")


def _scale_warnings(rows: list[dict], um_map: dict[str, float], target_um_per_px: float | None) -> list[str]:
    known_sources = sorted({r["source"] for r in rows})
    unknown_um = sorted(k for k in um_map if k not in known_sources)
    if unknown_um:
        raise PackError(
            f"--um-per-px names source(s) {unknown_um} not in the catalog; its sources: {known_sources}"
        )
    out: list[str] = []
    if target_um_per_px is not None:
        missing = Counter(
            r["source"] for r in rows if r["source"] not in um_map and r.get("um_per_px") is None
        )
        for src, cnt in sorted(missing.items()):
            msg = (
                f"source {src!r}: {cnt} cell(s) of unknown um_per_px are left at their scale; "
                f"give `ssl-cyto pack --um-per-px {src}=X` to resample them"
            )
            warnings.warn(msg, stacklevel=3)
            out.append(msg)
    return out


def _refuse_foreign(out: Path) -> None:
    """Refuse an existing folder that holds an ``index.json`` or shards that pack did not leave."""
    if out.exists() and not out.is_dir():
        raise PackError(f"--out {out}: is a file, not a folder; choose a folder for the shards")
    if not out.is_dir() or (out / STATE_DIR / OPTIONS_NAME).is_file():
        return
    index = out / INDEX_NAME
    if index.exists():
        try:
            ours = json.loads(index.read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
        except (ValueError, UnicodeDecodeError, AttributeError):
            ours = False
        what = (
            "an index.json of a pack whose state (.pack/) is gone"
            if ours
            else "an index.json not written by pack"
        )
        raise PackError(
            f"--out {out}: holds {what}; it is not overwritten. Pack into a new or empty --out "
            f"(or move {index} away)"
        )
    if any(out.glob(SHARD_GLOB)):
        raise PackError(f"{out}: holds shards without pack state ({STATE_DIR}/); choose an empty --out")


def _prepare_out(out: Path, opts: dict) -> None:
    """Create ``out`` and its state; refuse a folder packed with other options or not by pack; clear partial files.

    Every check runs before anything is created, so a refused pack leaves no ``.pack/`` behind.
    """
    _refuse_foreign(out)
    state = out / STATE_DIR
    opts_file = state / OPTIONS_NAME
    if opts_file.is_file():
        previous = json.loads(opts_file.read_text())
        diff = sorted(k for k in set(previous) | set(opts) if previous.get(k) != opts.get(k))
        if diff:
            detail = "; ".join(f"{k}: was {previous.get(k)!r}, now {opts.get(k)!r}" for k in diff)
            raise PackOptionsMismatch(
                f"{out}: an earlier pack into this folder used other options ({detail}). Rerun with the "
                f"same options to resume, or pack into a new --out (or delete {out})"
            )
    else:
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"--out {out}: cannot create it ({exc.strerror or exc}); choose a folder you can write to"
            ) from None
        opts_file.write_text(json.dumps(opts, indent=1))
    for stale in list(out.glob(".cells-*.tar.tmp")) + list(state.glob(".*.tmp")):
        stale.unlink()


def _run_tasks(tasks: list[tuple[int, list[dict], str, dict]], workers: int, bar: Any, done: dict) -> None:
    """Write the shards of ``tasks`` (in this process, or one shard per worker process) into ``done``."""
    try:
        if workers <= 1 or len(tasks) <= 1:
            shard_writer.set_progress(bar.update)
            for task in tasks:
                done[task[0]] = shard_writer.write_shard(*task)
            return
        progress_q: Any = mp.Queue()
        with mp.Pool(
            min(workers, len(tasks)), initializer=shard_writer.init_worker, initargs=(progress_q,)
        ) as pool:
            remaining = [pool.apply_async(shard_writer.write_shard_task, (task,)) for task in tasks]
            while remaining:
                with contextlib.suppress(queue_mod.Empty):  # nothing reported in 0.2 s: check results
                    bar.update(progress_q.get(timeout=0.2))
                still = []
                for r in remaining:
                    if r.ready():
                        side = r.get()  # re-raises a worker's exception
                        done[side["index"]] = side
                    else:
                        still.append(r)
                remaining = still
            while not progress_q.empty():
                bar.update(progress_q.get())
    finally:
        shard_writer.set_progress(None)


def pack(
    catalog: pd.DataFrame | str | os.PathLike,
    out_dir: str | os.PathLike,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    image_size: int | None = None,
    fmt: str = "png",
    um_per_px: dict[str, float] | None = None,
    target_um_per_px: float | None = None,
    seed: int = 0,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    progress: bool = True,
) -> dict:
    """Pack a catalog into WebDataset shards; resumable after a kill.

    Args:
        catalog: catalog DataFrame (columns of :data:`ssl_cyto.formats.catalog.CATALOG_COLUMNS`), a
            ``catalog.parquet`` or an image folder of any source layout.
        out_dir: shard folder (created). Rerunning into the same folder resumes.
        shard_size: cells per shard (before skipping bad files).
        workers: worker processes (one shard per task); ``0`` or ``1`` packs in this process.
        image_size: resize the shorter side to this many pixels (every image is re-encoded).
        fmt: ``png`` (lossless, zlib level 3; default), ``jpg`` (quality 95, 4:4:4) or ``webp`` (quality 95), used
            only when an image is re-encoded.
        um_per_px: per-source physical pixel size overriding the catalog column, e.g.
            ``{"aml-lmu": 0.1}``.
        target_um_per_px: resample cells of known scale to this pixel size.
        seed: shuffling seed (fixes which cells go to which shard).
        background: RGB that transparent pixels are composited onto.
        progress: show a tqdm bar (stderr) with rate and ETA.

    Returns:
        The content of ``index.json``.

    Raises:
        PackError: bad options or catalog; PackOptionsMismatch: a rerun with other options.
    """
    _check_options(shard_size, image_size, fmt, target_um_per_px)
    um_map = parse_um_per_px(um_per_px)
    rows = catalog_rows(load_catalog(catalog))
    n = len(rows)
    perm = np.random.default_rng(seed).permutation(n)
    n_shards = math.ceil(n / shard_size)
    assignment = [
        [rows[int(j)] for j in perm[i * shard_size : (i + 1) * shard_size]] for i in range(n_shards)
    ]
    warn_list = _scale_warnings(rows, um_map, target_um_per_px)
    opts = {
        "shard_size": int(shard_size),
        "image_size": None if image_size is None else int(image_size),
        "fmt": fmt,
        "um_per_px": dict(sorted(um_map.items())),
        "target_um_per_px": None if target_um_per_px is None else float(target_um_per_px),
        "seed": int(seed),
        "background": [int(c) for c in background],
        "catalog_cells": n,
        "catalog_sha256": catalog_fingerprint(rows),
    }
    out = Path(out_dir)
    _prepare_out(out, opts)

    done: dict[int, dict] = {}
    for i in range(n_shards):
        side = shard_writer.finished_sidecar(out, i)
        if side is not None:
            done[i] = side
    todo = [i for i in range(n_shards) if i not in done]
    total_todo = sum(len(assignment[i]) for i in todo)
    t0 = time.perf_counter()
    with progress_bar(
        total=total_todo,
        unit="cell",
        desc=f"pack {out.name}",
        disable=not progress,
        smoothing=0.1,
    ) as bar:
        if done and progress:
            bar.write(f"resuming: {len(done)}/{n_shards} shard(s) already complete in {out}")
        _run_tasks([(i, assignment[i], str(out), opts) for i in todo], workers, bar, done)
    elapsed = time.perf_counter() - t0

    index = build_index([done[i] for i in range(n_shards)], opts, warn_list)
    index["pack_seconds_last_run"] = round(elapsed, 3)
    index["cells_packed_last_run"] = total_todo
    merge_hashes(out, n_shards)
    write_index(out, index)
    return index


def merge_hashes(out: Path, n_shards: int) -> Path | None:
    """``image_hashes.parquet`` beside ``index.json``: the shards' image hashes in one file.

    Shards packed before pack stored hashes have none; ``probe`` / ``dedup`` hash those cells once.
    """
    parts = [shard_writer.hashes_path(out, i) for i in range(n_shards)]
    table = read_hashes(*[p for p in parts if p.is_file()])
    if table.empty:
        return None
    rows = zip(table["cell_id"], table["phash"], table["hash"], strict=True)
    return write_hashes(out / HASHES_FILE, rows)


def build_index(sidecars: list[dict], opts: dict, warn_list: list[str]) -> dict:
    """Assemble ``index.json`` from the per-shard sidecars."""
    classes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    exts: Counter[str] = Counter()
    skipped: list[dict] = []
    odd_size: list[dict] = []
    for s in sidecars:
        classes.update(s["classes"])
        sources.update(s["sources"])
        exts.update(s["extensions"])
        skipped.extend(s["skipped"])
        odd_size.extend(s.get("odd_size", []))
    total = sum(s["count"] for s in sidecars)
    total_bytes = sum(s["bytes"] for s in sidecars)
    n = len(sidecars)
    return {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "ssl_cyto_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pattern": f"cells-{{000000..{n - 1:06d}}}.tar" if n > 1 else shard_name(0),
        "key_encoding": KEY_ENCODING,
        "options": opts,
        "total_cells": total,
        "total_bytes": total_bytes,
        "bytes_per_cell": round(total_bytes / total, 1) if total else None,
        "n_shards": n,
        "shards": [
            {"name": s["name"], "count": s["count"], "bytes": s["bytes"], "sha256": s["sha256"]}
            for s in sidecars
        ],
        "classes": dict(sorted(classes.items())),
        "unlabelled": sum(s["unlabelled"] for s in sidecars),
        "sources": dict(sorted(sources.items())),
        "extensions": dict(sorted(exts.items())),
        "skipped": sorted(skipped, key=lambda r: r["cell_id"]),
        "odd_size": sorted(odd_size, key=lambda r: r["cell_id"]),
        "warnings": warn_list,
    }
