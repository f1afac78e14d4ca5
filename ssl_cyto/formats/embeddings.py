"""The embedding folder: the one reader and writer of what ``ssl-cyto embed`` produces.

An embedding folder ``EMB_DIR`` holds:

* ``embeddings.npy`` (:data:`EMBEDDINGS_FILE`) -- float32 ``(N, D)``; row ``i`` belongs to row ``i``
  of ``cells.parquet``;
* ``cells.parquet`` (:data:`CELLS_FILE`) -- the catalog columns of the embedded cells, sorted by
  ``cell_id``;
* ``model.json`` (:data:`MODEL_FILE`) -- a copy of the backbone's ``model.json`` (weights sha256
  included), read and written by :mod:`ssl_cyto.formats.model_json`;
* ``embed.json`` (:data:`EMBED_JSON`) -- the data spec, the data roots the cells were read from,
  options, counts, timing and hardware;
* optionally ``backbone/`` (:data:`BACKBONE_DIR`, the exact weights used when the model was a
  ``.ckpt`` or a name), ``index.faiss`` + ``index.json`` (:data:`INDEX_FILE`, :data:`INDEX_JSON`,
  written by ``ssl-cyto index build``) and, while an embedding runs, ``.partial/``.

``embed.json`` names where the cells came from: ``data`` (the spec as given), ``data_path`` (its
absolute form when it is a local path), ``shards`` (the absolute shard folder when the cells were
read from local shards, else ``null``) and ``roots`` (the distinct ``root`` values of
``cells.parquet``: the folders whose ``root / path`` are the cell images).

The files are written to temporary names and renamed into place, ``embed.json`` last: a folder with
an ``embed.json`` is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ssl_cyto.formats.errors import InputError, MissingInputError
from ssl_cyto.formats.model_json import MODEL_JSON, read_model_json, write_model_json

__all__ = [
    "BACKBONE_DIR",
    "CELLS_FILE",
    "EMBEDDINGS_FILE",
    "EMBED_JSON",
    "FOLDER_FILES",
    "INDEX_FILE",
    "INDEX_JSON",
    "INDEX_META",
    "MODEL_FILE",
    "EmbeddingFolder",
    "EmbeddingFolderError",
    "MissingEmbeddingsError",
    "is_embedding_folder",
    "new_vectors_file",
    "read_embed_json",
    "read_embedding_folder",
    "write_embedding_folder",
]

EMBEDDINGS_FILE = "embeddings.npy"
CELLS_FILE = "cells.parquet"
MODEL_FILE = MODEL_JSON
EMBED_JSON = "embed.json"
BACKBONE_DIR = "backbone"
INDEX_FILE = "index.faiss"
INDEX_JSON = "index.json"  # the FAISS index metadata's former name (still read)
INDEX_META = INDEX_FILE + ".json"  # its name since the shard index took index.json
FOLDER_FILES = (EMBEDDINGS_FILE, CELLS_FILE, MODEL_FILE, EMBED_JSON)
# columns a reader can rely on; an older or hand-written cells.parquet lacking them gets them empty
_REQUIRED_COLUMNS = ("source", "label", "reannot1", "reannot2")
_TMP_SUFFIX = ".tmp"


class EmbeddingFolderError(InputError):
    """An embedding folder that cannot be used: inconsistent files, bad JSON, duplicated cells."""


class MissingEmbeddingsError(EmbeddingFolderError, MissingInputError):
    """The folder (or its ``embeddings.npy`` / ``cells.parquet``) does not exist."""


@dataclass
class EmbeddingFolder:
    """An embedding folder as read by :func:`read_embedding_folder`.

    Attributes:
        path: the folder.
        vectors: ``(N, D)`` embeddings (a read-only memory map when read with ``mmap=True``).
        cells: the ``N`` catalog rows, row ``i`` for ``vectors[i]``.
        model: the folder's ``model.json`` (``{}`` when absent).
        embed: the folder's ``embed.json`` (``{}`` when absent, e.g. a hand-made folder).
    """

    path: Path
    vectors: np.ndarray
    cells: pd.DataFrame
    model: dict[str, Any] = field(default_factory=dict)
    embed: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of cells."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.vectors.shape[1])

    @property
    def embeddings_path(self) -> Path:
        """``path / embeddings.npy``."""
        return self.path / EMBEDDINGS_FILE

    @property
    def has_model(self) -> bool:
        """Whether the folder records the model that made the vectors (a ``model.json``)."""
        return (self.path / MODEL_FILE).is_file()

    @property
    def roots(self) -> list[str]:
        """The data roots of the cells: ``embed.json``'s ``roots``, else the distinct ``root`` values."""
        recorded = self.embed.get("roots")
        if recorded:
            return [str(r) for r in recorded]
        return _roots_of(self.cells)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbeddingFolderError(
            f"{path} is not valid JSON ({exc}); re-run `ssl-cyto embed --overwrite`"
        ) from exc
    if not isinstance(obj, dict):
        raise EmbeddingFolderError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_embed_json(path: str | os.PathLike) -> dict[str, Any]:
    """The ``embed.json`` of an embedding folder (or the file itself); ``{}`` when absent."""
    p = Path(path)
    return _read_json(p / EMBED_JSON if p.is_dir() else p)


def is_embedding_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding ``embeddings.npy`` and ``cells.parquet``."""
    p = Path(path)
    return p.is_dir() and (p / EMBEDDINGS_FILE).is_file() and (p / CELLS_FILE).is_file()


def read_embedding_folder(path: str | os.PathLike, mmap: bool = True) -> EmbeddingFolder:
    """Read an embedding folder and check its contract.

    Args:
        path: the folder written by ``ssl-cyto embed``.
        mmap: memory-map ``embeddings.npy`` read-only instead of loading it.

    Returns:
        An :class:`EmbeddingFolder`; ``cells`` has a fresh 0..N-1 index.

    Raises:
        MissingEmbeddingsError: ``embeddings.npy`` or ``cells.parquet`` is missing.
        EmbeddingFolderError: the array is not a non-empty 2-D array, its row count differs from
            ``cells.parquet``, ``cell_id`` is missing or repeated, or a JSON file is unreadable.
    """
    folder = Path(path)
    emb_path, cells_path = folder / EMBEDDINGS_FILE, folder / CELLS_FILE
    for f in (emb_path, cells_path):
        if not f.is_file():
            raise MissingEmbeddingsError(
                f"{f} not found: {folder} is not an embedding folder; create it with "
                f"`ssl-cyto embed --out {folder} ...`"
            )
    try:
        vectors = np.load(emb_path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError) as exc:
        raise EmbeddingFolderError(
            f"{emb_path} cannot be read ({exc}); re-run `ssl-cyto embed --overwrite`"
        ) from exc
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise EmbeddingFolderError(
            f"{emb_path}: expected a non-empty (n, dim) array, got shape {vectors.shape}; re-run embed"
        )
    n_rows = pq.read_metadata(cells_path).num_rows
    if n_rows != vectors.shape[0]:
        raise EmbeddingFolderError(
            f"{folder}: embeddings.npy has {vectors.shape[0]} rows but cells.parquet has {n_rows}; "
            "row i of embeddings.npy must be row i of cells.parquet, re-run `ssl-cyto embed --overwrite`"
        )
    cells = pd.read_parquet(cells_path).reset_index(drop=True)
    if "cell_id" not in cells.columns:
        raise EmbeddingFolderError(f"{cells_path} has no 'cell_id' column (columns: {list(cells.columns)})")
    dup = cells["cell_id"][cells["cell_id"].duplicated()]
    if len(dup):
        raise EmbeddingFolderError(f"{cells_path}: cell_id {dup.iloc[0]!r} appears more than once")
    for col in _REQUIRED_COLUMNS:
        if col not in cells.columns:
            cells[col] = None
    return EmbeddingFolder(
        path=folder,
        vectors=vectors,
        cells=cells,
        model=read_model_json(folder) if (folder / MODEL_FILE).is_file() else {},
        embed=_read_json(folder / EMBED_JSON),
    )


def new_vectors_file(out_dir: str | os.PathLike, n: int, dim: int) -> np.memmap:
    """A writable float32 ``(n, dim)`` memory map at ``out_dir/embeddings.npy.tmp``.

    Fill it and pass it as ``vectors`` to :func:`write_embedding_folder`, which then renames it
    into place instead of copying: large embeddings are assembled without holding them in memory.
    """
    tmp = Path(out_dir) / (EMBEDDINGS_FILE + _TMP_SUFFIX)
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(int(n), int(dim)))


def _roots_of(cells: pd.DataFrame) -> list[str]:
    if "root" not in cells.columns:
        return []
    return sorted({str(r) for r in cells["root"].dropna().tolist()})


def _is_memmap_of(vectors: np.ndarray, path: Path) -> bool:
    filename = getattr(vectors, "filename", None)
    if not isinstance(vectors, np.memmap) or filename is None or not path.exists():
        return False
    return os.path.samefile(filename, path)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_embedding_folder(
    out_dir: str | os.PathLike,
    vectors: np.ndarray,
    cells: pd.DataFrame,
    model_meta: dict[str, Any],
    embed_meta: dict[str, Any],
) -> Path:
    """Write ``embeddings.npy``, ``cells.parquet``, ``model.json`` and ``embed.json`` (last).

    Args:
        out_dir: the folder (created).
        vectors: ``(N, D)`` embeddings, stored as float32; a memory map from
            :func:`new_vectors_file` for this folder is flushed and renamed rather than copied.
        cells: the ``N`` rows (row ``i`` for ``vectors[i]``), written as given.
        model_meta: the backbone's ``model.json``, copied verbatim.
        embed_meta: the ``embed.json`` record; ``roots`` (the distinct ``root`` values of ``cells``)
            is filled in when not given.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        EmbeddingFolderError: ``vectors`` is not 2-D or its row count differs from ``cells``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if vectors.ndim != 2 or vectors.shape[0] != len(cells):
        raise EmbeddingFolderError(
            f"{out}: {vectors.shape} embeddings for {len(cells)} cells; expected one (D,) row per cell"
        )
    tmp_vectors = out / (EMBEDDINGS_FILE + _TMP_SUFFIX)
    cells.to_parquet(out / (CELLS_FILE + _TMP_SUFFIX), index=False)
    os.replace(out / (CELLS_FILE + _TMP_SUFFIX), out / CELLS_FILE)
    if isinstance(vectors, np.memmap) and _is_memmap_of(vectors, tmp_vectors):
        vectors.flush()
    else:
        with open(tmp_vectors, "wb") as fh:
            np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
    os.replace(tmp_vectors, out / EMBEDDINGS_FILE)
    write_model_json(out, dict(model_meta))
    record = dict(embed_meta)
    record.setdefault("roots", _roots_of(cells))
    _write_json(out / EMBED_JSON, record)
    return out
