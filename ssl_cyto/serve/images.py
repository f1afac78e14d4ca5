"""The image of an indexed cell, found through what ``embed`` recorded, and its thumbnail.

A client names a cell by its ``cell_id`` only; the file is looked up from server-side records, never
from a path the client sends:

1. the original file ``root / path`` of the cell's ``cells.parquet`` row (a ``roots`` mapping
   ``source -> folder`` in ``embed.json`` overrides ``root``), refused if it resolves outside its
   root: the full-resolution image, where this server can read it;
2. otherwise the shards the cells were embedded from (``embed.json``: ``data_kind == "shards"`` with the
   ``shards`` folder that ``embed`` records, else ``data_path`` / ``data``): a ``key -> (tar, offset, size)`` map is built once at
   start-up with :mod:`tarfile` (keys from :func:`ssl_cyto.formats.shard_index.cell_key`), so an
   image is one ``seek`` + ``read`` (packing may have resized it: the page says which it shows).

JPEG, PNG and WEBP bytes go to the browser as they are; other formats (TIFF, BMP) are decoded with
:func:`ssl_cyto.data.images.open_rgb` and sent as PNG. Thumbnails are JPEG, cached in memory (LRU).
"""

from __future__ import annotations

import glob
import io
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.formats.shard_index import cell_key, is_shard_dir, shard_paths
from ssl_cyto.serve.errors import ApiError
from ssl_cyto.serve.uploads import sniff_format

__all__ = ["THUMB_SIZE", "ImageStore", "shard_files_of"]

THUMB_SIZE = 128
THUMB_CACHE = 4096  # ~4 kB each: ~16 MB at most
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")
_MEDIA = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def _candidates(spec: str, emb_dir: Path) -> list[Path]:
    path = Path(spec)
    if path.is_absolute():
        return [path]
    return [emb_dir / path, emb_dir.parent / path, Path.cwd() / path]


def shard_files_of(embed_meta: dict, emb_dir: Path) -> list[Path]:
    """The shard tars an embedding folder was made from, or ``[]`` if it was not made from shards."""
    recorded = embed_meta.get("shards")  # embed records the shard folder (or a list of tars)
    if isinstance(recorded, list) and recorded:
        found = [p for s in recorded for p in _candidates(str(s), emb_dir)[:1] if p.is_file()]
        if found:
            return found
    if embed_meta.get("data_kind") != "shards":
        return []
    specs = [str(embed_meta.get("data") or "")]
    for key in ("data_path", "shards"):
        if isinstance(embed_meta.get(key), str):
            specs.insert(0, str(embed_meta[key]))
    fingerprint = embed_meta.get("fingerprint") or {}
    if fingerprint.get("data"):
        specs.append(str(fingerprint["data"]))
    for spec in specs:
        for cand in _candidates(spec, emb_dir):
            if cand.is_dir() and is_shard_dir(cand):
                return list(shard_paths(cand))
            if cand.is_file() and cand.suffix == ".tar":
                return [cand]
            if any(c in str(cand) for c in "*?["):
                hits = sorted(Path(p) for p in glob.glob(str(cand)))
                if hits:
                    return hits
    return []


class ImageStore:
    """Bytes and thumbnails of indexed cells (thread-safe; read-only).

    Args:
        lookup: ``cell_id -> (source, root, path)`` of an indexed cell, None for an unknown id.
        shards: shard tars to read images from first (may be empty).
        roots: optional ``source -> folder`` overriding the recorded ``root``.
    """

    def __init__(
        self,
        lookup: Callable[[str], tuple[str, str, str] | None],
        shards: Sequence[Path] = (),
        roots: dict[str, str] | None = None,
    ) -> None:
        self._lookup = lookup
        self._roots = dict(roots or {})
        self._members: dict[str, tuple[Path, int, int]] = {}
        for tar_path in shards:
            self._index_tar(Path(tar_path))
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def n_in_shards(self) -> int:
        """How many cells have their image in a shard."""
        return len(self._members)

    def _index_tar(self, tar_path: Path) -> None:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition("/")[-1].partition(".")
                if ext.lower() in IMAGE_SUFFIXES:
                    self._members[key] = (tar_path, member.offset_data, member.size)

    def _file_of(self, cell_id: str, row: tuple[str, str, str]) -> Path:
        source, root, rel = row
        base = Path(self._roots.get(source, root)).resolve()
        path = (base / rel).resolve()
        if not path.is_relative_to(base):
            raise ApiError(404, "image_not_found", f"the image of {cell_id!r} lies outside its source root")
        return path

    def _original(self, cell_id: str, row: tuple[str, str, str]) -> bytes | None:
        try:
            path = self._file_of(cell_id, row)
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None

    def _member(self, cell_id: str) -> bytes | None:
        member = self._members.get(cell_key(cell_id))
        if member is None:
            return None
        tar_path, offset, size = member
        with tar_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    def raw_with_origin(self, cell_id: str) -> tuple[bytes, str]:
        """The stored file of a cell and where it came from: ``original`` (``root / path``, full
        resolution) where this server reaches it, else ``shard`` (the packed copy, maybe resized).

        Raises:
            ApiError: 404 unknown cell or image not available on this server.
        """
        row = self._lookup(cell_id)
        if row is None:
            raise ApiError(404, "unknown_cell", f"no indexed cell has the id {cell_id!r}")
        data = self._original(cell_id, row)
        if data is not None:
            return data, "original"
        data = self._member(cell_id)
        if data is not None:
            return data, "shard"
        self._file_of(cell_id, row)  # a row pointing outside its root says so
        raise ApiError(
            404,
            "image_not_found",
            f"the image of {cell_id!r} is not available on this server (its shards or source folder moved)",
        )

    def raw(self, cell_id: str) -> bytes:
        """The stored file of a cell (see :meth:`raw_with_origin`)."""
        return self.raw_with_origin(cell_id)[0]

    def origin_summary(self, cell_ids: Sequence[str] | np.ndarray, sample: int = 20) -> dict[str, int]:
        """Where the images of up to ``sample`` evenly spaced cells come from (``original``/``shard``/``missing``)."""
        out = {"original": 0, "shard": 0, "missing": 0}
        n = len(cell_ids)
        for i in sorted({int(j * n / sample) for j in range(min(sample, n))}):
            try:
                out[self.raw_with_origin(str(cell_ids[i]))[1]] += 1
            except ApiError:
                out["missing"] += 1
        return out

    def _decode(self, cell_id: str, data: bytes) -> Image.Image:
        fmt = sniff_format(data)
        try:
            return open_rgb(data, name=f"{cell_id}.{'tiff' if fmt == 'TIFF' else 'img'}")
        except ImageDecodeError:
            raise ApiError(
                404, "image_not_found", f"the stored image of {cell_id!r} cannot be decoded"
            ) from None

    def image(self, cell_id: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, origin)`` a browser can show: JPEG/PNG/WEBP as stored, others as PNG."""
        data, origin = self.raw_with_origin(cell_id)
        fmt = sniff_format(data)
        if fmt in _MEDIA:
            return data, _MEDIA[fmt], origin
        buf = io.BytesIO()
        self._decode(cell_id, data).save(buf, format="PNG")
        return buf.getvalue(), "image/png", origin

    def thumb(self, cell_id: str) -> bytes:
        """A JPEG at most ``THUMB_SIZE`` pixels a side (cached)."""
        with self._lock:
            hit = self._thumbs.get(cell_id)
            if hit is not None:
                self._thumbs.move_to_end(cell_id)
                return hit
        img = self._decode(cell_id, self.raw(cell_id))
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=88)
        out = buf.getvalue()
        with self._lock:
            self._thumbs[cell_id] = out
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return out
