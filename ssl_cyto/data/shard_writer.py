"""Encoding one cell and writing one shard (and its resume sidecar) for :func:`ssl_cyto.data.packing.pack`.

* every image is decoded once to check it; an unreadable, empty, truncated or corrupt file (or one
  whose sha256 differs from the catalog's) is skipped and listed with its path and the reason;
* by default nothing is resized: RGB JPEGs pass through byte for byte, everything else (RGBA TIFF,
  grey-scale, 16-bit, palette...) is converted with :func:`ssl_cyto.data.images.open_rgb` and stored
  as ``fmt`` (PNG by default, lossless);
* a shard is written as ``.cells-%06d.tar.tmp``, its sidecar ``.pack/cells-%06d.json`` (count,
  bytes, sha256, counts, skipped) is stored, then the tar is renamed: a shard file that exists is
  complete. Tar headers use a fixed mtime, so identical inputs give byte-identical shards;
* an image with a side under 16 px or over 4096 px (:func:`ssl_cyto.data.images.size_problem`) is
  packed, and listed in the sidecar's ``odd_size`` (``index.json["odd_size"]``).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import webdataset as wds
from PIL import Image

from ssl_cyto.data.image_hash import image_hash
from ssl_cyto.data.images import ImageDecodeError, open_rgb, size_problem
from ssl_cyto.formats.errors import InputError
from ssl_cyto.formats.hashing import sha256_bytes, sha256_file
from ssl_cyto.formats.image_hashes import write_hashes
from ssl_cyto.formats.shard_index import IMAGE_FORMATS, STATE_DIR, cell_key, shard_name

PNG_COMPRESS_LEVEL = 3  # zlib level: ~4x faster than Pillow's default 6 for ~13% more bytes (AML TIFFs)
JPEG_QUALITY = 95
WEBP_QUALITY = 95
TAR_MTIME = 0  # fixed header time: identical inputs give byte-identical shards
PROGRESS_EVERY = 25  # cells between two progress reports


class ChecksumMismatch(InputError):
    """A cell file whose sha256 differs from the catalog's (changed since the scan)."""


class _Progress:
    """Where :func:`write_shard` reports finished cells: ``tqdm.update`` in-process, a queue in a worker."""

    report: Callable[[int], object] | None = None


def set_progress(report: Callable[[int], object] | None) -> None:
    """Route progress reports (a number of cells) to ``report``; None turns them off."""
    _Progress.report = report


def init_worker(queue: object) -> None:
    """``multiprocessing.Pool`` initializer: report progress into ``queue``."""
    set_progress(queue.put)  # type: ignore[attr-defined]


def _report(n: int) -> None:
    if _Progress.report is not None and n:
        _Progress.report(n)


# ------------------------------------------------------------------------------------ one cell
def scale_of(row: dict, opts: dict) -> float | None:
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
        raise InputError(f"unknown image format {fmt!r}; choose one of {IMAGE_FORMATS}")
    return buf.getvalue()


def encode_cell(row: dict, opts: dict) -> tuple[str, bytes]:
    """``(extension, bytes)`` of one cell (see :func:`encode_cell_sized`)."""
    ext, data, _ = encode_cell_sized(row, opts)
    return ext, data


def encode_cell_sized(row: dict, opts: dict) -> tuple[str, bytes, tuple[int, int]]:
    """Read, check and (if needed) convert one cell image (see :func:`encode_cell_image`)."""
    ext, data, size, _ = encode_cell_image(row, opts)
    return ext, data, size


def encode_cell_image(row: dict, opts: dict) -> tuple[str, bytes, tuple[int, int], Image.Image]:
    """Read, check and (if needed) convert one cell image; also the decoded image as packed.

    Args:
        row: catalog row (``root``, ``path``, ``source``, optional ``sha256`` / ``um_per_px``).
        opts: packing options (``fmt``, ``image_size``, ``target_um_per_px``, ``um_per_px``,
            ``background``).

    Returns:
        ``(extension, bytes)`` to store, the ``(width, height)`` of the file as read, and the decoded
        RGB image as packed (resized when it is re-encoded; the pixels before a lossy codec).

    Raises:
        ImageDecodeError: the file cannot be decoded.
        OSError: the file cannot be read.
        ChecksumMismatch: the file's sha256 differs from the catalog's.
    """
    path = Path(row["root"]) / row["path"]
    data = path.read_bytes()
    expected = row.get("sha256")
    if expected and sha256_bytes(data) != expected:
        raise ChecksumMismatch(
            "sha256 differs from the catalog (file changed since the scan); rescan the source"
        )
    img = open_rgb(data, background=tuple(opts["background"]), name=str(path))
    with Image.open(io.BytesIO(data)) as probe:
        in_format, in_mode = probe.format, probe.mode
    w, h = img.size
    size = (w, h)
    scale = scale_of(row, opts)
    if scale is not None and abs(scale - 1.0) > 1e-9:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if opts["image_size"] is not None:
        s = int(opts["image_size"])
        sw, sh = size
        size = (s, max(1, round(sh * s / sw))) if sw <= sh else (max(1, round(sw * s / sh)), s)
    reencode = opts["image_size"] is not None or size != (w, h)
    if not reencode and in_format == "JPEG" and in_mode == "RGB":
        return "jpg", data, (w, h), img
    packed = _resize(img, size)
    return opts["fmt"], _encode(packed, opts["fmt"]), (w, h), packed


# ----------------------------------------------------------------------------------- one shard
def sidecar_path(out_dir: str | os.PathLike, index: int) -> Path:
    """``.pack/cells-%06d.json``: the record of finished shard ``index``."""
    return Path(out_dir) / STATE_DIR / f"{Path(shard_name(index)).stem}.json"


def hashes_path(out_dir: str | os.PathLike, index: int) -> Path:
    """``.pack/cells-%06d.hashes.parquet``: the image hashes of shard ``index`` (merged by pack)."""
    return Path(out_dir) / STATE_DIR / f"{Path(shard_name(index)).stem}.hashes.parquet"


def finished_sidecar(out_dir: str | os.PathLike, index: int) -> dict | None:
    """The sidecar of a finished shard if the shard file matches it (size and sha256), else None."""
    side = sidecar_path(out_dir, index)
    tar = Path(out_dir) / shard_name(index)
    if not (side.is_file() and tar.is_file()):
        return None
    try:
        sidecar = json.loads(side.read_text())
    except ValueError:  # unreadable sidecar: redo the shard
        return None
    if sidecar.get("bytes") != tar.stat().st_size or sidecar.get("sha256") != sha256_file(tar):
        return None
    return sidecar


def _skip_reason(exc: Exception, path: str) -> str:
    reason = str(exc)
    return reason[len(path) + 2 :] if reason.startswith(path + ": ") else reason


def write_shard(index: int, rows: list[dict], out_dir: str, opts: dict) -> dict:
    """Write shard ``index`` with ``rows`` (skipping bad cells) and its sidecar; returns the sidecar.

    The tar is written as ``.cells-%06d.tar.tmp``; the sidecar ``.pack/cells-%06d.json`` is stored,
    then the tar is renamed. A shard file that exists is therefore always complete.
    """
    out = Path(out_dir)
    name = shard_name(index)
    tmp = out / f".{name}.tmp"
    skipped: list[dict] = []
    odd_size: list[dict] = []
    classes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    exts: Counter[str] = Counter()
    unlabelled = count = pending = 0
    hashes: list[tuple[str, str, bytes]] = []
    with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME, format="PAX_FORMAT") as tw:
        for row in rows:
            path = str(Path(row["root"]) / row["path"])
            try:
                ext, payload, (w, h), img = encode_cell_image(row, opts)
            except FileNotFoundError:
                skipped.append({"cell_id": row["cell_id"], "path": path, "reason": "file not found"})
            except (ImageDecodeError, OSError, ValueError) as exc:
                skipped.append({"cell_id": row["cell_id"], "path": path, "reason": _skip_reason(exc, path)})
            else:
                h_img = image_hash(img)  # once, on the image as packed, while it is decoded
                hashes.append((str(row["cell_id"]), h_img.phash, h_img.to_bytes()))
                meta = json.dumps({**row, "phash": h_img.phash}, ensure_ascii=False, sort_keys=False).encode(
                    "utf-8"
                )
                tw.write({"__key__": cell_key(row["cell_id"]), ext: payload, "json": meta})
                odd = size_problem(w, h)
                if odd is not None:
                    odd_size.append({"cell_id": row["cell_id"], "path": path, "reason": odd})
                count += 1
                exts[ext] += 1
                sources[str(row["source"])] += 1
                if row.get("label") is None:
                    unlabelled += 1
                else:
                    classes[str(row["label"])] += 1
            pending += 1
            if pending >= PROGRESS_EVERY:
                _report(pending)
                pending = 0
        _report(pending)
    sidecar = {
        "name": name,
        "index": index,
        "count": count,
        "bytes": tmp.stat().st_size,
        "sha256": sha256_file(tmp),
        "classes": dict(sorted(classes.items())),
        "unlabelled": unlabelled,
        "sources": dict(sorted(sources.items())),
        "extensions": dict(sorted(exts.items())),
        "skipped": skipped,
        "odd_size": odd_size,
    }
    side = sidecar_path(out, index)
    write_hashes(hashes_path(out, index), hashes)
    side_tmp = side.with_name(f".{name}.json.tmp")
    side_tmp.write_text(json.dumps(sidecar, indent=1))
    os.replace(side_tmp, side)
    os.replace(tmp, out / name)
    return sidecar


def write_shard_task(task: tuple[int, list[dict], str, dict]) -> dict:
    """:func:`write_shard` on one tuple (for ``Pool.apply_async``)."""
    return write_shard(*task)
