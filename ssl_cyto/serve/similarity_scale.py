"""A scale for similarities: where a query's best match falls among the index's own nearest neighbours.

A cosine similarity means little alone: with one model real neighbours score 0.90-0.98 and a 1x1
pixel upload still 0.8. At start-up a seeded sample of at most :data:`SAMPLE` indexed cells is
searched in the index (the same search the requests use) and each one's nearest *other* cell's
similarity is kept, sorted. A query's best similarity is then placed as a percentile of that
distribution (0: below every sampled cell's nearest neighbour; 50: a typical indexed cell's), and an
upload below the 1st percentile, smaller than :data:`MIN_SIDE` pixels a side, or longer than
:data:`MAX_ASPECT` times its width (or the other way round) gets a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_cyto.retrieval.index_io import search
from ssl_cyto.serve.state import ServeState

__all__ = ["MAX_ASPECT", "MIN_SIDE", "SAMPLE", "SimilarityScale", "build_scale", "upload_warnings"]

SAMPLE = 2000
SEED = 0
MIN_SIDE = 32
MAX_ASPECT = 4.0
LOW_PERCENTILE = 1.0
_BATCH = 500


@dataclass(frozen=True)
class SimilarityScale:
    """Sorted nearest-neighbour similarities of a seeded sample of indexed cells."""

    sims: np.ndarray
    p1: float
    p50: float = float("nan")

    @property
    def sample(self) -> int:
        """How many cells the scale was measured on."""
        return len(self.sims)

    def percentile(self, similarity: float) -> float | None:
        """Share (0-100) of the sampled cells whose nearest neighbour is less similar than ``similarity``."""
        if not len(self.sims):
            return None
        below = np.searchsorted(self.sims, np.float32(similarity), side="left")
        return round(100.0 * float(below) / len(self.sims), 1)

    def describe(self, best: float | None) -> dict | None:
        """The ``scale`` of an answer: the best similarity's percentile and the sample's 1st/50th."""
        if best is None or not len(self.sims):
            return None
        return {
            "best_similarity": round(float(best), 6),
            "percentile": self.percentile(best),
            "p1": round(self.p1, 6),
            "p50": round(self.p50, 6),
            "sample": self.sample,
        }


def build_scale(state: ServeState, sample: int = SAMPLE, seed: int = SEED) -> SimilarityScale:
    """Search a seeded sample of at most ``sample`` indexed cells and keep their nearest-other similarity."""
    n = state.n
    if n < 2:
        return SimilarityScale(np.zeros(0, dtype=np.float32), float("nan"), float("nan"))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), _BATCH):
        part = rows[start : start + _BATCH]
        vectors = np.asarray(state.folder.vectors[part], dtype=np.float32)
        sims, ids = search(state.index, vectors, 2)
        # the nearest cell other than itself (an exact duplicate counts as a neighbour)
        own = ids[:, 0] == part
        out[start : start + len(part)] = np.where(own, sims[:, 1], sims[:, 0])
    out.sort()
    return SimilarityScale(out, float(np.percentile(out, LOW_PERCENTILE)), float(np.median(out)))


def upload_warnings(width: int, height: int, scale: dict | None) -> list[dict]:
    """Why an upload's answer may mean little: tiny, sliver-shaped, or unlike every indexed cell."""
    out = []
    if min(width, height) < MIN_SIDE:
        out.append(
            {
                "code": "tiny_image",
                "detail": f"the upload is {width}x{height} px, under {MIN_SIDE} px on a side: "
                "it cannot show a cell; its neighbours are arbitrary",
            }
        )
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > MAX_ASPECT:
        out.append(
            {
                "code": "extreme_aspect",
                "detail": f"the upload's sides differ {ratio:.1f}-fold (over {MAX_ASPECT:g}): "
                "crop one cell, roughly square",
            }
        )
    if scale is not None and scale["percentile"] is not None and scale["best_similarity"] < scale["p1"]:
        out.append(
            {
                "code": "low_similarity",
                "detail": f"the best similarity {scale['best_similarity']:.4f} is below the 1st percentile "
                f"({scale['p1']:.4f}) of indexed cells' nearest neighbours: nothing in the index looks like it",
            }
        )
    return out
