"""``image_hashes.parquet``: each cell's perceptual image hash, stored by the artefact that owns it.

Written by ``ssl-cyto pack`` beside ``index.json`` (hashes of the images as packed), by
``ssl-cyto embed`` of an image folder or catalog beside ``embeddings.npy`` (hashed as its loader
decodes each image) and, when an embedding folder's cells have none, by ``probe`` / ``dedup`` beside
``embeddings.npy`` (the cells they had to hash, kept so that no image is hashed twice). Columns: ``cell_id`` (string),
``phash`` (16 hex characters: the 64-bit DCT hash of the whole image) and ``hash`` (binary:
:meth:`ssl_cyto.data.image_hash.ImageHash.to_bytes`, the 8 orientations then the 76 windows, 2,688
bytes a cell). Several files concatenate; a cell listed twice keeps its first row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["HASH_COLUMNS", "HASHES_FILE", "read_hashes", "write_hashes"]

HASHES_FILE = "image_hashes.parquet"
"""The file name, in a shard folder or an embedding folder."""
HASH_COLUMNS = ("cell_id", "phash", "hash")
_SCHEMA = pa.schema([("cell_id", pa.string()), ("phash", pa.string()), ("hash", pa.binary())])


def write_hashes(path: str | os.PathLike, rows: Iterable[tuple[str, str, bytes]]) -> Path:
    """Write ``(cell_id, phash, hash bytes)`` rows to ``path`` (a file, or a folder: ``HASHES_FILE`` in it)."""
    p = Path(path)
    if p.is_dir():
        p = p / HASHES_FILE
    ids, phashes, blobs = [], [], []
    for cid, ph, blob in rows:
        ids.append(str(cid))
        phashes.append(str(ph))
        blobs.append(bytes(blob))
    table = pa.Table.from_arrays(
        [pa.array(ids), pa.array(phashes), pa.array(blobs, pa.binary())], schema=_SCHEMA
    )
    tmp = p.with_name(f".{p.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, p)
    return p


def read_hashes(*paths: str | os.PathLike) -> pd.DataFrame:
    """The rows of every existing file (or folder holding ``HASHES_FILE``) among ``paths``, first row per cell."""
    frames = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            p = p / HASHES_FILE
        if p.is_file():
            frames.append(pq.read_table(p).to_pandas())
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in HASH_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates("cell_id", keep="first").reset_index(drop=True)
