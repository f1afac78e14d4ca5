"""A packed shard folder: shard and sample names, and ``index.json`` (its only reader and writer).

::

    shards/cells-000000.tar  cells-000001.tar ...   WebDataset shards (POSIX tar, PAX headers)
    shards/index.json                               counts, bytes, sha256, options, skipped cells
    shards/.pack/                                   resume state of ``ssl-cyto pack``

Samples are keyed by :func:`cell_key`: ``cell_id`` percent-encoded
(``urllib.parse.quote(cell_id, safe="")``) with ``.`` written as ``%2E`` too, so ``/`` -> ``%2F``,
``:`` -> ``%3A``, ``.`` -> ``%2E``. The escape is injective (unique cell ids give unique keys) and a
key has no dot (WebDataset splits a file name into key and extension at the first dot).
:func:`key_to_cell_id` reverses it. Each sample holds one image (:data:`IMAGE_FORMATS`) and ``.json``
(the cell's catalog row).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, unquote

from ssl_cyto.formats.errors import InputError, MissingInputError

SHARD_PATTERN = "cells-%06d.tar"
SHARD_GLOB = "cells-*.tar"
INDEX_NAME = "index.json"
STATE_DIR = ".pack"
INDEX_FORMAT = "ssl_cyto-shards"
INDEX_VERSION = 1
KEY_ENCODING = "percent-encoding of cell_id (urllib.parse.quote, safe=''), with . as %2E"
IMAGE_FORMATS = ("png", "jpg", "webp")  # the image extensions a sample may hold
DEFAULT_SHARD_SIZE = 1000  # cells per shard unless `ssl-cyto pack --shard-size` says otherwise


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``cells-000042.tar``)."""
    return SHARD_PATTERN % index


def cell_key(cell_id: str) -> str:
    """The WebDataset sample key of a cell: ``cell_id`` percent-encoded, with dots encoded too.

    ``urllib.parse.quote(cell_id, safe="")`` keeps letters, digits and ``_-~`` and writes every other
    UTF-8 byte as ``%XX``; ``.`` (which quote keeps) becomes ``%2E`` because WebDataset splits a file
    name into key and extension at the first dot. Literal ``%`` becomes ``%25``, so the mapping is
    injective (unique cell ids give unique keys) and :func:`key_to_cell_id` reverses it.

    Example:
        ``aml-lmu/AML-Cytomorphology/BAS/BAS_0001.tiff`` -> ``aml-lmu%2FAML-Cytomorphology%2FBAS%2FBAS_0001%2Etiff``
    """
    return quote(cell_id, safe="").replace(".", "%2E")


def key_to_cell_id(key: str) -> str:
    """Inverse of :func:`cell_key`."""
    return unquote(key)


def is_shard_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding ``index.json`` or ``cells-*.tar`` shards."""
    p = Path(path)
    return p.is_dir() and ((p / INDEX_NAME).is_file() or any(p.glob(SHARD_GLOB)))


def read_index(shard_dir: str | os.PathLike) -> dict:
    """Load ``index.json`` of a shard folder.

    Raises:
        MissingInputError: no index.json (the folder was not packed, or the pack did not finish).
        InputError: index.json is not valid JSON.
    """
    path = Path(shard_dir) / INDEX_NAME
    if not path.is_file():
        raise MissingInputError(
            f"{path}: no index.json; pack the catalog first (ssl-cyto pack --catalog ... --out {shard_dir}) "
            "or rerun an interrupted pack"
        )
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); rerun `ssl-cyto pack` into this folder") from exc


def write_index(shard_dir: str | os.PathLike, index: dict) -> Path:
    """Write ``index.json`` atomically (a temporary file renamed over it); returns its path."""
    d = Path(shard_dir)
    tmp = d / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, d / INDEX_NAME)
    return d / INDEX_NAME


def shard_paths(shard_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a folder in index order (from index.json, else sorted ``cells-*.tar``)."""
    d = Path(shard_dir)
    if (d / INDEX_NAME).is_file():
        return [d / s["name"] for s in read_index(d)["shards"]]
    return sorted(d.glob(SHARD_GLOB))
