"""Is an uploaded image one of the indexed cells? Named by its file hash, perceptual hash or similarity.

In order: the SHA-256 of the uploaded bytes against the catalog's ``sha256`` column (the same file);
else, where ``cells.parquet`` stores a ``phash`` column (64-bit perceptual hash, 16 hex characters),
the upload's perceptual hash against it (the same image re-encoded); else a best neighbour at cosine
similarity >= :data:`EXACT_SIMILARITY` (the same pixels through the same model). The hash tables are
built once at start-up. The perceptual hash is pack's own (:func:`ssl_cyto.data.image_hash.phash_hex`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from ssl_cyto.data.image_hash import phash_hex

__all__ = ["EXACT_SIMILARITY", "ExactMatcher", "build_matcher"]

EXACT_SIMILARITY = 0.99999


def _table(cells: pd.DataFrame, column: str) -> dict[str, int]:
    if column not in cells.columns:
        return {}
    out: dict[str, int] = {}
    for row, value in enumerate(cells[column].astype(object).to_numpy()):
        if isinstance(value, str) and value:
            out.setdefault(value.lower(), row)
    return out


@dataclass
class ExactMatcher:
    """Hash tables of the indexed cells (``hash -> row``)."""

    sha256: dict[str, int] = field(default_factory=dict)
    phash: dict[str, int] = field(default_factory=dict)
    phash_of: Callable[[Image.Image], str] | None = None

    def by_hash(self, data: bytes, img: Image.Image) -> tuple[int, str] | None:
        """``(row, "sha256" | "phash")`` of the indexed cell this upload is, or None."""
        if self.sha256:
            row = self.sha256.get(hashlib.sha256(data).hexdigest())
            if row is not None:
                return row, "sha256"
        if self.phash and self.phash_of is not None:
            row = self.phash.get(str(self.phash_of(img)).lower())
            if row is not None:
                return row, "phash"
        return None

    @staticmethod
    def by_similarity(pairs: list[tuple[float, int]]) -> tuple[int, str] | None:
        """The best neighbour if its similarity is >= :data:`EXACT_SIMILARITY`."""
        if pairs and pairs[0][0] >= EXACT_SIMILARITY:
            return pairs[0][1], "similarity"
        return None


def build_matcher(cells: pd.DataFrame) -> ExactMatcher:
    """The hash tables of ``cells.parquet`` (empty where a column is missing)."""
    phash = _table(cells, "phash")
    return ExactMatcher(sha256=_table(cells, "sha256"), phash=phash, phash_of=phash_hex if phash else None)


def describe(row: int, how: str, cell_ids: np.ndarray, labels: np.ndarray, names: np.ndarray) -> dict:
    """The ``exact_match`` of an answer."""
    return {"cell_id": str(cell_ids[row]), "label": labels[row], "label_name": names[row], "by": how}
