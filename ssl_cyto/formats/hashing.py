"""SHA-256 of files and bytes: the one implementation every artefact's checksum uses."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
