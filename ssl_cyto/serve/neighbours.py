"""Nearest indexed cells of a query vector, optionally restricted to a label and/or a source.

Without a filter this is :func:`ssl_cyto.retrieval.index_io.search` on the loaded index (exact for a
``flat`` index, approximate for ``hnsw``/``ivf``), as ``ssl-cyto query`` does. With a filter the
answer holds ``k`` cells whenever at least ``k`` indexed cells match: the index is asked for enough
candidates that ``k`` matches are expected among them (``2 k N / matches``, up to
``MAX_CANDIDATES``) and the matches are kept; if that yields too few, the matching cells are
compared exactly (cosine over their stored vectors, read from the memory-mapped
``embeddings.npy``). Only small filters reach the exact path, so it stays cheap.
"""

from __future__ import annotations

import math

import numpy as np

from ssl_cyto.retrieval.faiss_index import normalize
from ssl_cyto.retrieval.index_io import search
from ssl_cyto.serve.state import ServeState

__all__ = ["K_MAX", "MAX_CANDIDATES", "neighbours", "nearest_rows"]

K_MAX = 1000
MAX_CANDIDATES = 4096
EXACT_CHUNK = 65536


def _exact(state: ServeState, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), EXACT_CHUNK):
        part = rows[start : start + EXACT_CHUNK]
        sims[start : start + len(part)] = (
            normalize(np.asarray(state.folder.vectors[part], dtype=np.float32)) @ q
        )
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    top = top[np.lexsort((rows[top], -sims[top]))]
    return sims[top], rows[top]


def nearest_rows(
    state: ServeState, vector: np.ndarray, k: int, mask: np.ndarray | None = None, exclude: int | None = None
) -> list[tuple[float, int]]:
    """Up to ``k`` ``(similarity, row)`` pairs, best first, matching ``mask``, without row ``exclude``.

    Args:
        state: the loaded service state.
        vector: ``(1, D)`` query vector (normalised here).
        k: neighbours wanted.
        mask: rows allowed (None: all).
        exclude: a row never returned (the query cell itself).
    """
    extra = 0 if exclude is None else 1
    n_total = int(state.index.ntotal)
    if mask is None:
        sims, ids = search(state.index, vector, min(k + extra, n_total))
        pairs = [(float(s), int(i)) for s, i in zip(sims[0], ids[0], strict=True) if i >= 0 and i != exclude]
        return pairs[:k]
    allowed = mask.copy()
    if exclude is not None:
        allowed[exclude] = False
    n_match = int(allowed.sum())
    if n_match == 0:
        return []
    want = min(k, n_match)
    candidates = min(n_total, math.ceil(2 * k * n_total / n_match) + k + extra)
    if candidates <= MAX_CANDIDATES:
        sims, ids = search(state.index, vector, candidates)
        pairs = [(float(s), int(i)) for s, i in zip(sims[0], ids[0], strict=True) if i >= 0 and allowed[i]]
        if len(pairs) >= want:
            return pairs[:want]
    q = normalize(np.asarray(vector, dtype=np.float32))[0]
    sims, rows = _exact(state, q, np.flatnonzero(allowed), want)
    return [(float(s), int(i)) for s, i in zip(sims, rows, strict=True)]


def neighbours(state: ServeState, pairs: list[tuple[float, int]], names: np.ndarray) -> list[dict]:
    """The answer rows: the fields of ``ssl-cyto query --json`` plus ``source`` and ``label_name``.

    Built from the loaded arrays only (``names``: each row's full class name, computed at start-up).
    ``path`` is relative to the cell's source root (never an absolute server path).
    """
    return [
        {
            "rank": rank,
            "cell_id": str(state.cell_ids[i]),
            "path": str(state.paths[i]),
            "label": state.labels[i],
            "label_name": names[i],
            "source": str(state.sources[i]),
            "similarity": round(sim, 6),
        }
        for rank, (sim, i) in enumerate(pairs, start=1)
    ]
