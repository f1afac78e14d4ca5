"""The image hashes of an embedding folder's cells: read where they are stored, computed only once.

Order of look-up for each cell (:func:`cell_hashes`):

1. ``EMB_DIR/image_hashes.parquet`` (hashes ``ssl-cyto embed`` computed as it decoded an image
   folder, or that this module computed earlier);
2. the shard folder it was embedded from (``embed.json``'s ``shards`` / ``data_path`` / ``data``):
   ``image_hashes.parquet`` written by ``ssl-cyto pack`` from the images as packed;
3. otherwise the image at ``root / path`` is decoded and hashed
   (:func:`ssl_cyto.data.image_hash.image_hash`), and the hashes computed here are kept in
   ``EMB_DIR/image_hashes.parquet`` so that no image is hashed twice (hashes of the shard folder
   stay there, not copied: 2,688 bytes a cell).

:class:`HashTable` holds them as arrays and computes the distances of many pairs at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_cyto.data.image_hash import HASH_BITS, HASH_BYTES, N_TURNS, N_WINDOWS, image_hash
from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.formats.image_hashes import HASHES_FILE, read_hashes, write_hashes

__all__ = ["HashTable", "cell_hashes", "hash_sources", "image_paths", "images_available"]

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_ROW = HASH_BITS // 8
_PAIRS_PER_BLOCK = 2000


def image_paths(cells: pd.DataFrame) -> list[Path]:
    """``root / path`` of every cell."""
    return [Path(str(r)) / str(p) for r, p in zip(cells["root"], cells["path"], strict=True)]


def images_available(cells: pd.DataFrame) -> bool:
    """Whether the first cell's image is on disk at ``root / path`` (the images the cells came from)."""
    if cells.empty or "root" not in cells.columns or "path" not in cells.columns:
        return False
    return image_paths(cells.iloc[:1])[0].is_file()


class HashTable:
    """Hashes of the rows of a cell table: ``bits`` (N, 84, 32) bytes, ``ok`` where a hash is known."""

    def __init__(self, n: int) -> None:
        self.bits = np.zeros((n, N_TURNS + N_WINDOWS, _ROW), dtype=np.uint8)
        self.ok = np.zeros(n, dtype=bool)
        self.phash = np.full(n, "", dtype=object)

    def set_rows(self, rows: np.ndarray, blobs: Sequence[bytes], phashes: Sequence[str]) -> None:
        """Fill ``rows`` from stored hash bytes."""
        if len(rows):
            self.bits[rows] = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(rows), -1, _ROW)
            self.ok[rows] = True
            self.phash[rows] = list(phashes)

    def distances(self, pairs: np.ndarray) -> np.ndarray:
        """Hash distance (:func:`ssl_cyto.data.image_hash.hash_distance`) of each row pair; -1 if one is unknown."""
        out = np.full(len(pairs), -1, dtype=np.int64)
        known = (
            np.flatnonzero(self.ok[pairs[:, 0]] & self.ok[pairs[:, 1]]) if len(pairs) else np.zeros(0, int)
        )
        for s in range(0, len(known), _PAIRS_PER_BLOCK):
            sel = known[s : s + _PAIRS_PER_BLOCK]
            a, b = self.bits[pairs[sel, 0]], self.bits[pairs[sel, 1]]
            d1 = _POPCOUNT[a[:, :N_TURNS, None] ^ b[:, None, N_TURNS:]].sum(-1, dtype=np.int64).min((1, 2))
            d2 = _POPCOUNT[b[:, :N_TURNS, None] ^ a[:, None, N_TURNS:]].sum(-1, dtype=np.int64).min((1, 2))
            out[sel] = np.minimum(d1, d2)
        return out


def hash_sources(emb_dir: Path, embed_meta: dict) -> list[Path]:
    """Where stored hashes may be: the folder itself, then the shard folder it was embedded from."""
    out = [Path(emb_dir) / HASHES_FILE]
    for key in ("shards", "data_path", "data"):
        value = embed_meta.get(key)
        if isinstance(value, str) and value and not value.startswith("synth:"):
            p = Path(value)
            out += [p / HASHES_FILE, p.parent / HASHES_FILE]
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def _hash_images(
    cells: pd.DataFrame, rows: list[int], progress: str | None
) -> tuple[dict[int, object], list[str]]:
    paths = image_paths(cells.iloc[rows]) if rows else []
    out: dict[int, object] = {}
    bad: list[str] = []
    t0 = time.time()
    for n, (r, path) in enumerate(zip(rows, paths, strict=True)):
        try:
            out[r] = image_hash(open_rgb(path))
        except (ImageDecodeError, OSError) as exc:
            bad.append(f"{path}: {exc}")
        if progress and (n + 1) % 2000 == 0:
            print(
                f"{progress}: hashed {n + 1} of {len(rows)} images ({time.time() - t0:.0f} s)",
                file=sys.stderr,
            )
    return out, bad


def cell_hashes(
    emb_dir: str | Path,
    cells: pd.DataFrame,
    embed_meta: dict,
    rows: Sequence[int] | None = None,
    progress: str | None = None,
) -> tuple[HashTable, list[str]]:
    """The hashes of ``rows`` (default all) of ``cells``, stored or computed once: ``(table, unreadable)``.

    Cells without a stored hash are hashed from their images when those are on disk; the new hashes
    (and those copied from the shard folder) are written to ``EMB_DIR/image_hashes.parquet``.
    """
    emb_dir = Path(emb_dir)
    n = len(cells)
    table = HashTable(n)
    pos = pd.Series(np.arange(n), index=cells["cell_id"].astype(str).to_numpy())
    mine = np.zeros(n, dtype=bool)  # rows whose hash lives in EMB_DIR's own file
    wanted = np.arange(n) if rows is None else np.unique(np.asarray(list(rows), dtype=np.int64))
    is_wanted = np.zeros(n, dtype=bool)
    is_wanted[wanted] = True
    for k, source in enumerate(hash_sources(emb_dir, embed_meta)):
        stored = read_hashes(source)
        found = pos.reindex(stored["cell_id"].astype(str).to_numpy()).to_numpy()
        have = ~np.isnan(found)
        if k == 0:  # the folder's own hashes are all kept when it writes new ones
            mine[found[have].astype(np.int64)] = True
            have[have] = ~table.ok[found[have].astype(np.int64)]
        else:  # elsewhere: only the rows asked for (190k hashes are 510 MB)
            have[have] = is_wanted[found[have].astype(np.int64)] & ~table.ok[found[have].astype(np.int64)]
        rows_found = found[have].astype(np.int64)
        table.set_rows(rows_found, stored["hash"].to_numpy()[have], stored["phash"].to_numpy()[have])
    todo = [int(r) for r in wanted if not table.ok[r]]
    bad: list[str] = []
    if todo and images_available(cells):
        computed, bad = _hash_images(cells, todo, progress)
        keys = np.asarray(sorted(computed), dtype=np.int64)
        table.set_rows(
            keys,
            [computed[r].to_bytes() for r in keys],  # type: ignore[attr-defined]
            [computed[r].phash for r in keys],  # type: ignore[attr-defined]
        )
        if len(keys):
            mine[keys] = True
            _keep(emb_dir, cells, table, np.flatnonzero(mine))
    return table, bad


def _keep(emb_dir: Path, cells: pd.DataFrame, table: HashTable, rows: np.ndarray) -> None:
    """Write the hashes of ``rows`` to ``EMB_DIR/image_hashes.parquet`` (those the folder computed)."""
    ids = cells["cell_id"].astype(str).to_numpy()
    blobs = table.bits[rows].reshape(len(rows), HASH_BYTES)
    try:
        write_hashes(
            emb_dir / HASHES_FILE, ((ids[r], table.phash[r], blobs[i].tobytes()) for i, r in enumerate(rows))
        )
    except OSError as exc:
        print(f"warning: could not keep the image hashes in {emb_dir / HASHES_FILE}: {exc}", file=sys.stderr)
