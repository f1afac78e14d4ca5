"""The body of a query answer, built from the start-up tables and plain arrays.

:class:`Answerer` holds what :func:`ssl_cyto.serve.app.create_app` computes once (the per-cell
:class:`~ssl_cyto.serve.lookups.Lookups`, the :class:`~ssl_cyto.serve.similarity_scale.SimilarityScale`,
the :class:`~ssl_cyto.serve.exact_match.ExactMatcher` and the map); a request adds only the search,
the upload's embedding, and a JSON body of ``k`` rows. Each answer records where its time went in a
``timing`` dict (milliseconds: ``queue`` waiting for a compute slot, ``embed``, ``search``, and
``answer``: everything this module does after the search - exact match, warnings, scale, map, rows),
which the app sends as a ``Server-Timing`` header.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from ssl_cyto.serve.exact_match import build_matcher, describe
from ssl_cyto.serve.lookups import build_lookups
from ssl_cyto.serve.map_points import answer_map, gzip_json, map_payload
from ssl_cyto.serve.neighbours import nearest_rows, neighbours
from ssl_cyto.serve.similarity_scale import build_scale, upload_warnings
from ssl_cyto.serve.state import ServeState
from ssl_cyto.serve.uploads import Limits, decode_upload

__all__ = ["PREVIEW_SIZE", "Answerer"]

PREVIEW_SIZE = 256
BROWSER_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _preview(img: Any) -> str:
    small = img.copy()
    small.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Answerer:
    """Query answers over one loaded state (see the module docstring)."""

    def __init__(self, state: ServeState) -> None:
        self.state = state
        self.lookups = build_lookups(state, state.umap)
        started = time.perf_counter()
        self.scale = build_scale(state)
        self.scale_seconds = round(_ms(started) / 1000.0, 3)
        self.matcher = build_matcher(state.folder.cells)
        self.umap_plain, self.umap_gzip = gzip_json(map_payload(state, state.umap, self.lookups))

    def _base(
        self,
        query: str,
        k: int,
        label: str | None,
        source: str | None,
        pairs: list[tuple[float, int]],
        query_row: int | None,
    ) -> dict[str, Any]:
        state, names = self.state, self.lookups.label_names
        best = pairs[0][0] if pairs else None
        return {
            "query": query,
            "k": k,
            "label": label or None,
            "source": source or None,
            "query_label": None if query_row is None else state.labels[query_row],
            "query_label_name": None if query_row is None else names[query_row],
            "query_source": None if query_row is None else str(state.sources[query_row]),
            "upload": None,
            "scale": self.scale.describe(best),
            "map": answer_map(self.lookups, pairs, query_row),
            "neighbours": neighbours(state, pairs, names),
        }

    def for_cell(
        self, row: int, k: int, label: str | None, source: str | None, timing: dict[str, float]
    ) -> dict[str, Any]:
        """Neighbours of indexed row ``row`` (itself excluded)."""
        mask = self.lookups.filter_mask(label, source)
        start = time.perf_counter()
        with self.state.compute:
            timing["queue"] = _ms(start)
            start = time.perf_counter()
            pairs = nearest_rows(self.state, self.state.vector_of(row), k, mask, row)
            timing["search"] = _ms(start)
        start = time.perf_counter()
        answer = self._base(str(self.state.cell_ids[row]), k, label, source, pairs, row)
        timing["answer"] = _ms(start)
        return answer

    def for_upload(
        self,
        data: bytes,
        limits: Limits,
        k: int,
        label: str | None,
        source: str | None,
        timing: dict[str, float],
        preview: bool = False,
    ) -> dict[str, Any]:
        """Neighbours of an uploaded image; names it if it is an indexed cell; warns if it means little.

        ``preview``: add a JPEG data URL of the upload when a browser cannot show its format (TIFF).
        """
        mask = self.lookups.filter_mask(label, source)
        start = time.perf_counter()
        with self.state.compute:  # decoding inside too: at most `threads` decoded uploads in memory at once
            timing["queue"] = _ms(start)
            start = time.perf_counter()
            img, fmt = decode_upload(data, limits)
            vector = self.state.embed(img)
            timing["embed"] = _ms(start)
            start = time.perf_counter()
            pairs = nearest_rows(self.state, vector, k, mask)
            timing["search"] = _ms(start)
            start = time.perf_counter()
            match = self.matcher.by_hash(data, img) or self.matcher.by_similarity(pairs)
            upload: dict[str, Any] = {"format": fmt, "width": img.width, "height": img.height}
            if preview and fmt not in BROWSER_FORMATS:
                upload["preview"] = _preview(img)
        answer = self._base("upload", k, label, source, pairs, None)
        answer["upload"] = upload
        if match is not None:
            state = self.state
            answer["exact_match"] = describe(
                match[0], match[1], state.cell_ids, state.labels, self.lookups.label_names
            )
            if answer["map"] is not None:
                answer["map"]["query"] = answer_map(self.lookups, [], match[0])["query"]  # type: ignore[index]
                answer["map"]["placed"] = "cell"
        warnings = upload_warnings(img.width, img.height, answer["scale"] if match is None else None)
        if warnings:
            answer["warnings"] = warnings
        timing["answer"] = _ms(start)
        return answer
