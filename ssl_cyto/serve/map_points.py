"""The page's map: the UMAP of ``ssl-cyto umap`` in a compact, gzip-compressed form, thinned when large.

Built once at start-up: labels and sources as small integer codes into lists, coordinates rounded to
4 digits, at most :data:`MAX_POINTS` points (a seeded sample, the same every start; the bounds are
those of every point), gzip-compressed once. The cells of an answer are placed from
:attr:`ssl_cyto.serve.lookups.Lookups.xy` (every mapped cell, shown or not); an upload at the
similarity-weighted mean of its neighbours' positions.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd

from ssl_cyto.serve.lookups import Lookups
from ssl_cyto.serve.state import ServeState

__all__ = ["MAX_POINTS", "UMAP_HINT", "answer_map", "map_payload", "place_upload"]

MAX_POINTS = 50_000
UMAP_HINT = (
    "no map in this embedding folder: make it with `ssl-cyto umap EMB_DIR` (writes EMB_DIR/umap/) "
    "and restart the server"
)


def map_payload(
    state: ServeState, umap: pd.DataFrame | None, lookups: Lookups, max_points: int = MAX_POINTS
) -> dict:
    """The JSON body of ``GET /api/umap`` (see the module docstring)."""
    if umap is None or not len(umap) or lookups.xy is None:
        return {"available": False, "hint": UMAP_HINT}
    rows = np.array([state.position[str(c)] for c in umap["cell_id"]], dtype=np.int64)
    total = len(rows)
    shown = rows
    if total > max_points:
        pick = np.sort(np.random.default_rng(0).choice(total, size=max_points, replace=False))
        shown = rows[pick]
    xy = lookups.xy[rows]
    classes = sorted(lookups.label_masks)
    sources = sorted(lookups.source_masks)
    label_code = {c: i for i, c in enumerate(classes)}
    source_code = {s: i for i, s in enumerate(sources)}
    return {
        "available": True,
        "total": total,
        "shown": len(shown),
        "bounds": [
            float(xy[:, 0].min()),
            float(xy[:, 0].max()),
            float(xy[:, 1].min()),
            float(xy[:, 1].max()),
        ],
        "classes": classes,
        "sources": sources,
        "cell_id": [str(state.cell_ids[r]) for r in shown],
        "x": [round(float(v), 4) for v in lookups.xy[shown, 0]],
        "y": [round(float(v), 4) for v in lookups.xy[shown, 1]],
        "label": [-1 if state.labels[r] is None else label_code[str(state.labels[r])] for r in shown],
        "source": [source_code[str(state.sources[r])] for r in shown],
    }


def gzip_json(body: dict) -> tuple[bytes, bytes]:
    """``(plain, gzip)`` bytes of a JSON body, compressed once."""
    plain = json.dumps(body, separators=(",", ":")).encode()
    return plain, gzip.compress(plain, compresslevel=6, mtime=0)


def _xy(lookups: Lookups, row: int) -> list[float] | None:
    assert lookups.xy is not None
    x, y = lookups.xy[row]
    return None if np.isnan(x) else [round(float(x), 4), round(float(y), 4)]


def place_upload(lookups: Lookups, pairs: list[tuple[float, int]]) -> list[float] | None:
    """The similarity-weighted mean position of the neighbours on the map (None if none is mapped)."""
    if lookups.xy is None or not pairs:
        return None
    rows = np.array([r for _, r in pairs], dtype=np.int64)
    weights = np.clip(np.array([s for s, _ in pairs], dtype=np.float64), 0.0, None)
    xy = lookups.xy[rows].astype(np.float64)
    ok = ~np.isnan(xy[:, 0])
    if not ok.any():
        return None
    w = weights[ok] if weights[ok].sum() > 0 else np.ones(int(ok.sum()))
    mean = (xy[ok] * w[:, None]).sum(axis=0) / w.sum()
    return [round(float(mean[0]), 4), round(float(mean[1]), 4)]


def answer_map(lookups: Lookups, pairs: list[tuple[float, int]], query_row: int | None) -> dict | None:
    """The ``map`` of an answer: the query's position (a cell's own, or an upload's placement) and the
    neighbours' positions (None for a cell not on the map); None without a map."""
    if lookups.xy is None:
        return None
    query = _xy(lookups, query_row) if query_row is not None else place_upload(lookups, pairs)
    return {
        "query": query,
        "placed": "cell" if query_row is not None else "neighbours",
        "neighbours": [_xy(lookups, r) for _, r in pairs],
    }
