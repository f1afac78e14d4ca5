"""Pack a cell catalog into WebDataset shards (resumable), and verify packed shards.

``ssl-cyto pack --catalog catalog.parquet --out shards/`` writes::

    shards/cells-000000.tar  cells-000001.tar ...   WebDataset shards (POSIX tar, PAX headers)
    shards/index.json                               counts, bytes, sha256, options, skipped cells
    shards/.pack/options.json, .pack/cells-%06d.json  resume state (one sidecar per finished shard)

Each sample holds the image (``.jpg``, ``.png`` or ``.webp``) and ``.json`` (the cell's catalog row,
``null`` where a value is unknown). Samples are keyed by :func:`cell_key`: ``cell_id``
percent-encoded (``urllib.parse.quote(cell_id, safe="")``) with ``.`` written as ``%2E`` too, so
``/`` -> ``%2F``, ``:`` -> ``%3A``, ``.`` -> ``%2E``. The escape is injective (unique cell ids give
unique keys) and a key has no dot (WebDataset splits a file name into key and extension at the first
dot). :func:`key_to_cell_id` reverses it.

Packing rules (see ``docs/shards.md``):

* the catalog is shuffled across sources with a fixed seed (``numpy.random.default_rng(seed)``) and
  cut into shards of ``shard_size`` cells, so every shard mixes sources and the cells of shard ``i``
  are fixed by the seed alone (the result does not depend on the number of workers);
* every image is decoded once to check it; an unreadable, empty, truncated or corrupt file (or one
  whose sha256 differs from the catalog's) is skipped and listed in ``index.json["skipped"]`` with
  its path and the reason; the job never stops for one bad cell;
* by default nothing is resized: RGB JPEGs pass through byte for byte, everything else (RGBA TIFF,
  grey-scale, 16-bit, palette...) is converted with :func:`ssl_cyto.data.images.open_rgb` (alpha
  composited on ``background``) and stored as ``fmt`` (PNG by default, lossless);
* ``image_size`` resizes the shorter side (every image is then re-encoded as ``fmt``);
  ``target_um_per_px`` resamples cells of known physical scale (catalog column ``um_per_px`` or the
  per-source override ``um_per_px={source: x}``) to a common scale; sources of unknown scale are
  left as they are, with a warning naming them;
* a shard is written as ``.cells-%06d.tar.tmp``, its sidecar (count, bytes, sha256, counts, skipped)
  is stored, then the tar is renamed; a rerun after a kill re-checks finished shards (size and
  sha256 against the sidecar), removes partial files and packs only what is missing. Tar headers use
  a fixed mtime, so a resumed pack is byte-identical to an uninterrupted one. A rerun with other
  options or another catalog is refused (:class:`PackOptionsMismatch`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_cyto.data.images import DEFAULT_BACKGROUND, ImageDecodeError, open_rgb

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

SHARD_PATTERN = "cells-%06d.tar"
INDEX_NAME = "index.json"
STATE_DIR = ".pack"
INDEX_FORMAT = "ssl_cyto-shards"
INDEX_VERSION = 1
DEFAULT_SHARD_SIZE = 1000
FORMATS = ("png", "jpg", "webp")
REQUIRED_COLUMNS = ("cell_id", "source", "path", "root")
ROW_COLUMNS = ("cell_id", "source", "path", "root", "label", "reannot1", "reannot2", "um_per_px", "sha256")
PNG_COMPRESS_LEVEL = 3  # zlib level: ~4x faster than Pillow's default 6 for ~13% more bytes (AML TIFFs)
JPEG_QUALITY = 95
WEBP_QUALITY = 95
TAR_MTIME = 0  # fixed header time: identical inputs give byte-identical shards


class PackError(ValueError):
    """Bad input to :func:`pack` (catalog, options or output folder); the message says the fix."""


class PackOptionsMismatch(PackError):
    """A rerun into an existing shard folder with different options or a different catalog."""


# --------------------------------------------------------------------------------------------- keys
def cell_key(cell_id: str) -> str:
    """The WebDataset sample key of a cell: ``cell_id`` percent-encoded, with dots encoded too.

    ``urllib.parse.quote(cell_id, safe="")`` keeps letters, digits and ``_-~`` and writes every other
    UTF-8 byte as ``%XX``; ``.`` (which quote keeps) becomes ``%2E`` because WebDataset splits a file
    name into key and extension at the first dot. Literal ``%`` becomes ``%25``, so the mapping is
    injective (unique cell ids give unique keys) and :func:`key_to_cell_id` reverses it.

    Example:
        ``aml-lmu/AML-Cytomorphology/BAS/BAS_0001.tiff`` -> ``aml-lmu%2FAML-Cytomorphology%2FBAS%2FBAS_0001%2Etiff``
    """
    from urllib.parse import quote

    return quote(cell_id, safe="").replace(".", "%2E")


def key_to_cell_id(key: str) -> str:
    """Inverse of :func:`cell_key`."""
    from urllib.parse import unquote

    return unquote(key)


# ------------------------------------------------------------------------------------------ helpers
def shard_name(index: int) -> str:
    """File name of shard ``index`` (``cells-000042.tar``)."""
    return SHARD_PATTERN % index


def is_shard_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding ``index.json`` or ``cells-*.tar`` shards."""
    p = Path(path)
    return p.is_dir() and ((p / INDEX_NAME).is_file() or any(p.glob("cells-*.tar")))


def read_index(shard_dir: str | os.PathLike) -> dict:
    """Load ``index.json`` of a shard folder.

    Raises:
        FileNotFoundError: no index.json (the folder was not packed, or the pack did not finish).
    """
    path = Path(shard_dir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no index.json; pack the catalog first (ssl-cyto pack --catalog ... --out {shard_dir}) "
            "or rerun an interrupted pack"
        )
    with path.open() as fh:
        return json.load(fh)


def shard_paths(shard_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a folder in index order (from index.json, else sorted ``cells-*.tar``)."""
    d = Path(shard_dir)
    if (d / INDEX_NAME).is_file():
        return [d / s["name"] for s in read_index(d)["shards"]]
    return sorted(d.glob("cells-*.tar"))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _clean_value(value: Any) -> Any:
    """A catalog cell as a JSON value (NaN/NA -> None, numpy scalars -> Python)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return value


def _rows(df: pd.DataFrame) -> list[dict]:
    cols = list(ROW_COLUMNS) + [c for c in df.columns if c not in ROW_COLUMNS]
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({c: _clean_value(rec.get(c)) for c in cols})
    return out


def load_catalog(catalog: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """A catalog DataFrame from a DataFrame, a ``catalog.parquet`` or an image folder of any source layout.

    Missing optional columns (label, reannot1, reannot2, um_per_px, sha256) are added as null.

    Raises:
        PackError: missing required columns, duplicate ``cell_id`` or an empty catalog.
        FileNotFoundError: the path does not exist.
    """
    import pandas as pd

    if isinstance(catalog, pd.DataFrame):
        df = catalog.copy()
        origin = "catalog DataFrame"
    else:
        path = Path(catalog)
        origin = str(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: catalog not found; create it with `ssl-cyto data scan`")
        if path.is_file():
            from ssl_cyto.data.catalog import read_catalog

            df = read_catalog(path)
        else:
            from ssl_cyto.data.catalog import catalog_from_path

            df = catalog_from_path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise PackError(f"{origin}: missing column(s) {missing}; a catalog needs {list(ROW_COLUMNS)}")
    for col in ROW_COLUMNS:
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


# ------------------------------------------------------------------------------------------ packing
def _scale_of(row: dict, opts: dict) -> float | None:
    """Resampling factor of a cell (new px per old px), or None when its scale is unknown."""
    target = opts["target_um_per_px"]
    if target is None:
        return 1.0
    um = opts["um_per_px"].get(row["source"])
    if um is None:
        um = row.get("um_per_px")
    if um is None:
        return None
    return float(um) / float(target)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    from PIL import Image

    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "jpg":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=WEBP_QUALITY, method=4)
    else:  # pragma: no cover - checked in pack()
        raise PackError(f"unknown image format {fmt!r}; choose one of {FORMATS}")
    return buf.getvalue()


def encode_cell(row: dict, opts: dict) -> tuple[str, bytes]:
    """Read, check and (if needed) convert one cell image.

    Args:
        row: catalog row (``root``, ``path``, ``source``, optional ``sha256`` / ``um_per_px``).
        opts: packing options (``fmt``, ``image_size``, ``target_um_per_px``, ``um_per_px``,
            ``background``).

    Returns:
        ``(extension, bytes)`` to store.

    Raises:
        ImageDecodeError: the file cannot be decoded.
        OSError: the file cannot be read.
        ValueError: the file's sha256 differs from the catalog's.
    """
    from PIL import Image

    path = Path(row["root"]) / row["path"]
    data = path.read_bytes()
    expected = row.get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError("sha256 differs from the catalog (file changed since the scan); rescan the source")
    img = open_rgb(data, background=tuple(opts["background"]), name=str(path))
    with Image.open(io.BytesIO(data)) as probe:
        in_format, in_mode = probe.format, probe.mode
    w, h = img.size
    size = (w, h)
    scale = _scale_of(row, opts)
    if scale is not None and abs(scale - 1.0) > 1e-9:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if opts["image_size"] is not None:
        s = int(opts["image_size"])
        sw, sh = size
        size = (s, max(1, round(sh * s / sw))) if sw <= sh else (max(1, round(sw * s / sh)), s)
    reencode = opts["image_size"] is not None or size != (w, h)
    if not reencode and in_format == "JPEG" and in_mode == "RGB":
        return "jpg", data
    return opts["fmt"], _encode(_resize(img, size), opts["fmt"])


_PROGRESS: Any = None  # callable(n_cells): tqdm.update in-process, queue.put in a worker process


def _init_worker(queue: Any) -> None:
    global _PROGRESS
    _PROGRESS = queue.put


def _report(n: int) -> None:
    if _PROGRESS is not None and n:
        _PROGRESS(n)


def write_shard(index: int, rows: list[dict], out_dir: str, opts: dict, progress_every: int = 25) -> dict:
    """Write shard ``index`` with ``rows`` (skipping bad cells) and its sidecar; returns the sidecar.

    The tar is written as ``.cells-%06d.tar.tmp``; the sidecar ``.pack/cells-%06d.json`` is stored,
    then the tar is renamed. A shard file that exists is therefore always complete.
    """
    import webdataset as wds

    out = Path(out_dir)
    name = shard_name(index)
    tmp = out / f".{name}.tmp"
    skipped: list[dict] = []
    classes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    exts: Counter[str] = Counter()
    unlabelled = 0
    count = 0
    pending = 0
    with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME, format="PAX_FORMAT") as tw:
        for row in rows:
            path = str(Path(row["root"]) / row["path"])
            try:
                ext, payload = encode_cell(row, opts)
            except FileNotFoundError:
                skipped.append({"cell_id": row["cell_id"], "path": path, "reason": "file not found"})
            except (ImageDecodeError, OSError, ValueError) as exc:
                reason = str(exc)
                if reason.startswith(path + ": "):
                    reason = reason[len(path) + 2 :]
                skipped.append({"cell_id": row["cell_id"], "path": path, "reason": reason})
            else:
                meta = json.dumps(row, ensure_ascii=False, sort_keys=False).encode("utf-8")
                tw.write({"__key__": cell_key(row["cell_id"]), ext: payload, "json": meta})
                count += 1
                exts[ext] += 1
                sources[str(row["source"])] += 1
                if row.get("label") is None:
                    unlabelled += 1
                else:
                    classes[str(row["label"])] += 1
            pending += 1
            if pending >= progress_every:
                _report(pending)
                pending = 0
        _report(pending)
    sidecar = {
        "name": name,
        "index": index,
        "count": count,
        "bytes": tmp.stat().st_size,
        "sha256": file_sha256(tmp),
        "classes": dict(sorted(classes.items())),
        "unlabelled": unlabelled,
        "sources": dict(sorted(sources.items())),
        "extensions": dict(sorted(exts.items())),
        "skipped": skipped,
    }
    state = out / STATE_DIR
    side_tmp = state / f".{name}.json.tmp"
    side_tmp.write_text(json.dumps(sidecar, indent=1))
    os.replace(side_tmp, state / f"{Path(name).stem}.json")
    os.replace(tmp, out / name)
    return sidecar


def _write_shard_task(task: tuple[int, list[dict], str, dict]) -> dict:
    return write_shard(*task)


def _sidecar_ok(out: Path, index: int) -> dict | None:
    """The sidecar of a finished shard if the shard file matches it (size and sha256), else None."""
    name = shard_name(index)
    side = out / STATE_DIR / f"{Path(name).stem}.json"
    tar = out / name
    if not (side.is_file() and tar.is_file()):
        return None
    try:
        sidecar = json.loads(side.read_text())
    except ValueError:  # unreadable sidecar: redo the shard
        return None
    if sidecar.get("bytes") != tar.stat().st_size or sidecar.get("sha256") != file_sha256(tar):
        return None
    return sidecar


def _parse_um_per_px(items: dict[str, float] | list[str] | None) -> dict[str, float]:
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
        catalog: catalog DataFrame (columns of :data:`ssl_cyto.data.catalog.CATALOG_COLUMNS`), a
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
    import numpy as np
    import webdataset  # noqa: F401 - imported once here so forked workers inherit it (it imports torch)
    from tqdm import tqdm

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
    um_map = _parse_um_per_px(um_per_px)

    df = load_catalog(catalog)
    rows = _rows(df)
    n = len(rows)
    perm = np.random.default_rng(seed).permutation(n)
    n_shards = math.ceil(n / shard_size)
    assignment = [
        [rows[int(j)] for j in perm[i * shard_size : (i + 1) * shard_size]] for i in range(n_shards)
    ]

    warn_list: list[str] = []
    known_sources = sorted({r["source"] for r in rows})
    unknown_um = sorted(k for k in um_map if k not in known_sources)
    if unknown_um:
        raise PackError(
            f"--um-per-px names source(s) {unknown_um} not in the catalog; its sources: {known_sources}"
        )
    if target_um_per_px is not None:
        missing = Counter(
            r["source"] for r in rows if r["source"] not in um_map and r.get("um_per_px") is None
        )
        for src, cnt in sorted(missing.items()):
            msg = (
                f"source {src!r}: {cnt} cell(s) of unknown um_per_px are left at their scale; "
                f"give --um-per-px {src}=X to resample them"
            )
            warnings.warn(msg, stacklevel=2)
            warn_list.append(msg)

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
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_DIR
    state.mkdir(exist_ok=True)
    opts_file = state / "options.json"
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
        if any(out.glob("cells-*.tar")):
            raise PackError(f"{out}: holds shards without pack state ({STATE_DIR}/); choose an empty --out")
        opts_file.write_text(json.dumps(opts, indent=1))
    for stale in list(out.glob(".cells-*.tar.tmp")) + list(state.glob(".*.tmp")):
        stale.unlink()

    done: dict[int, dict] = {}
    for i in range(n_shards):
        side = _sidecar_ok(out, i)
        if side is not None:
            done[i] = side
    todo = [i for i in range(n_shards) if i not in done]
    total_todo = sum(len(assignment[i]) for i in todo)
    t0 = time.perf_counter()
    bar = tqdm(
        total=total_todo,
        unit="cell",
        desc=f"pack {out.name}",
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    if done and progress:
        bar.write(f"resuming: {len(done)}/{n_shards} shard(s) already complete in {out}")
    tasks = [(i, assignment[i], str(out), opts) for i in todo]
    global _PROGRESS
    try:
        if workers <= 1 or len(tasks) <= 1:
            _PROGRESS = bar.update
            for task in tasks:
                side = write_shard(*task)
                done[task[0]] = side
        else:
            import multiprocessing as mp
            import queue as queue_mod

            progress_q: Any = mp.Queue()
            with mp.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(progress_q,)) as pool:
                results = [pool.apply_async(_write_shard_task, (task,)) for task in tasks]
                remaining = list(results)
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
        _PROGRESS = None
        bar.close()
    elapsed = time.perf_counter() - t0

    sidecars = [done[i] for i in range(n_shards)]
    index = build_index(sidecars, opts, warn_list)
    index["pack_seconds_last_run"] = round(elapsed, 3)
    index["cells_packed_last_run"] = total_todo
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    os.replace(tmp, out / INDEX_NAME)
    return index


def build_index(sidecars: list[dict], opts: dict, warn_list: list[str]) -> dict:
    """Assemble ``index.json`` from the per-shard sidecars."""
    from ssl_cyto import __version__

    classes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    exts: Counter[str] = Counter()
    skipped: list[dict] = []
    for s in sidecars:
        classes.update(s["classes"])
        sources.update(s["sources"])
        exts.update(s["extensions"])
        skipped.extend(s["skipped"])
    total = sum(s["count"] for s in sidecars)
    total_bytes = sum(s["bytes"] for s in sidecars)
    n = len(sidecars)
    return {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "ssl_cyto_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pattern": f"cells-{{000000..{n - 1:06d}}}.tar" if n > 1 else shard_name(0),
        "key_encoding": "percent-encoding of cell_id (urllib.parse.quote, safe=''), with . as %2E",
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
        "warnings": warn_list,
    }


# ------------------------------------------------------------------------------------------- verify
def verify(shard_dir: str | os.PathLike, decode: bool = False, progress: bool = True) -> dict:
    """Re-read every shard of a folder and check it against ``index.json``.

    Checks per shard: the file exists, its size and sha256 match, it is a readable tar, every sample
    has ``.json`` and exactly one image, the json's ``cell_id`` matches the key, the sample count
    matches; across shards: no cell twice, totals match. ``decode=True`` also decodes every image.

    Returns:
        ``{"ok": bool, "shard_dir", "shards", "cells", "problems": [str, ...]}``; each problem names
        the shard.
    """
    import tarfile

    from tqdm import tqdm

    d = Path(shard_dir)
    problems: list[str] = []
    index = read_index(d)
    seen: set[str] = set()
    cells = 0
    listed = {s["name"] for s in index["shards"]}
    for extra in sorted(p.name for p in d.glob("cells-*.tar") if p.name not in listed):
        problems.append(f"{extra}: shard file not listed in index.json")
    for s in tqdm(index["shards"], desc="verify", unit="shard", file=sys.stderr, disable=not progress):
        path = d / s["name"]
        if not path.is_file():
            problems.append(f"{s['name']}: missing")
            continue
        size = path.stat().st_size
        if size != s["bytes"]:
            problems.append(f"{s['name']}: {size} bytes, index.json says {s['bytes']}")
        if file_sha256(path) != s["sha256"]:
            problems.append(f"{s['name']}: sha256 differs from index.json (file changed or corrupt)")
        samples: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for member in tf:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    fh = tf.extractfile(member)
                    assert fh is not None
                    samples.setdefault(key, {})[ext] = fh.read()
        except (tarfile.TarError, OSError) as exc:
            problems.append(f"{s['name']}: unreadable tar ({exc})")
            continue
        for key, parts in samples.items():
            images = [e for e in parts if e in FORMATS]
            if "json" not in parts or len(images) != 1:
                problems.append(f"{s['name']}: sample {key} has {sorted(parts)}, expected json + one image")
                continue
            try:
                row = json.loads(parts["json"])
            except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
                problems.append(f"{s['name']}: sample {key}: bad json ({exc})")
                continue
            if cell_key(str(row.get("cell_id"))) != key:
                problems.append(
                    f"{s['name']}: sample {key}: json cell_id {row.get('cell_id')!r} does not match"
                )
            if key in seen:
                problems.append(f"{s['name']}: cell {key_to_cell_id(key)!r} appears in more than one shard")
            seen.add(key)
            if decode:
                try:
                    open_rgb(parts[images[0]], name=f"{s['name']}:{key}.{images[0]}")
                except ImageDecodeError as exc:
                    problems.append(f"{s['name']}: {exc}")
        if len(samples) != s["count"]:
            problems.append(f"{s['name']}: {len(samples)} samples, index.json says {s['count']}")
        cells += len(samples)
    if cells != index["total_cells"]:
        problems.append(f"index.json: total_cells {index['total_cells']} but the shards hold {cells}")
    return {
        "ok": not problems,
        "shard_dir": str(d),
        "shards": len(index["shards"]),
        "cells": cells,
        "problems": problems,
    }


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ssl-cyto pack``."""
    parser.add_argument("--catalog", help="catalog.parquet (from `ssl-cyto data scan`) or an image folder")
    parser.add_argument("--out", help="shard folder to write (rerun with the same options to resume)")
    parser.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"cells per shard (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one shard each (default 1)")
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize the shorter side to S px (default: keep sizes)"
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="png",
        help="encoding for re-encoded images (default png; RGB JPEGs pass through unless resized)",
    )
    parser.add_argument(
        "--um-per-px",
        nargs="+",
        metavar="SOURCE=X",
        default=None,
        help="physical pixel size per source (overrides the catalog), e.g. aml-lmu=0.1 bm-mll=0.1",
    )
    parser.add_argument(
        "--target-um-per-px",
        type=float,
        default=None,
        help="resample cells of known scale to this pixel size",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    parser.add_argument(
        "--verify", metavar="SHARD_DIR", help="check a packed folder (counts, sha256) and exit"
    )
    parser.add_argument("--decode", action="store_true", help="with --verify: also decode every image")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``ssl-cyto pack``."""
    try:
        if args.verify:
            report = verify(args.verify, decode=args.decode, progress=not args.quiet)
            if report["ok"]:
                print(
                    f"OK: {report['shard_dir']}: {report['shards']} shard(s), {report['cells']} cells verified"
                )
                return 0
            print(f"FAILED: {report['shard_dir']}: {len(report['problems'])} problem(s)", file=sys.stderr)
            for p in report["problems"]:
                print(f"  {p}", file=sys.stderr)
            return 1
        if not args.catalog or not args.out:
            print("ssl-cyto pack: give --catalog and --out (or --verify SHARD_DIR)", file=sys.stderr)
            return 2
        index = pack(
            args.catalog,
            args.out,
            shard_size=args.shard_size,
            workers=args.workers,
            image_size=args.image_size,
            fmt=args.fmt,
            um_per_px=_parse_um_per_px(args.um_per_px),
            target_um_per_px=args.target_um_per_px,
            seed=args.seed,
            progress=not args.quiet,
        )
    except (PackError, FileNotFoundError, ValueError) as exc:
        print(f"ssl-cyto pack: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"packed {index['total_cells']} cells into {index['n_shards']} shard(s) in {args.out} "
        f"({index['total_bytes'] / 1e6:.1f} MB, {index['bytes_per_cell']} bytes/cell); "
        f"skipped {len(index['skipped'])} (listed in index.json)"
    )
    for s in index["skipped"][:10]:
        print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(index["skipped"]) > 10:
        print(f"  ... and {len(index['skipped']) - 10} more", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m ssl_cyto.data.shards ... (same options as `ssl-cyto pack`)
    _parser = argparse.ArgumentParser(
        prog="python -m ssl_cyto.data.shards", description=__doc__.splitlines()[0]
    )
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
