"""Per-cell tables computed once at start-up, so that a request does no work that does not depend on it.

A query reads only these arrays and dictionaries: the rows of each label and source (boolean
masks), each cell's full class name, its UMAP position (NaN where it has none) and the file hashes
that name an uploaded copy of an indexed cell (:mod:`ssl_cyto.serve.exact_match`). No table scan,
no pandas, no vocabulary lookup happens per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_cyto.data.vocabulary import full_name
from ssl_cyto.serve.errors import ApiError
from ssl_cyto.serve.state import ServeState

__all__ = ["Lookups", "build_lookups", "class_name"]


def class_name(source: str, label: str) -> str:
    """The vocabulary's full name of ``label``; the dataset's own table first, then the others.

    A folder of one dataset can carry another source name (a demo's copy, a subset): its codes
    (``NIF``, ``PMO``) are still named when some vocabulary knows them.
    """
    name = full_name(source, label)
    if name != label:
        return name
    for other in ("bm-mll", "aml-lmu"):
        name = full_name(other, label)
        if name != label:
            return name
    return label


@dataclass
class Lookups:
    """What requests read (see the module docstring)."""

    label_masks: dict[str, np.ndarray]
    source_masks: dict[str, np.ndarray]
    label_names: np.ndarray
    vocabulary: dict[str, str]
    xy: np.ndarray | None
    known_labels: str
    known_sources: str

    def filter_mask(self, label: str | None, source: str | None) -> np.ndarray | None:
        """Rows matching the filters (None when there is no filter).

        Raises:
            ApiError: 400 for a label or source no indexed cell has.
        """
        if not label and not source:
            return None
        masks = []
        if label:
            hit = self.label_masks.get(label)
            if hit is None:
                raise ApiError(
                    400,
                    "unknown_label",
                    f"no indexed cell has the label {label!r}; labels: {self.known_labels}",
                )
            masks.append(hit)
        if source:
            hit = self.source_masks.get(source)
            if hit is None:
                raise ApiError(
                    400,
                    "unknown_source",
                    f"no indexed cell comes from the source {source!r}; sources: {self.known_sources}",
                )
            masks.append(hit)
        return masks[0] if len(masks) == 1 else masks[0] & masks[1]


def _masks(values: np.ndarray) -> dict[str, np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    return {str(u): codes == i for i, u in enumerate(uniques) if u is not None}


def build_lookups(state: ServeState, umap: pd.DataFrame | None = None) -> Lookups:
    """The tables of :class:`Lookups` for a loaded state (and its UMAP, if any)."""
    label_masks = _masks(state.labels)
    source_masks = _masks(state.sources)
    vocabulary: dict[str, str] = {}
    for label, mask in label_masks.items():
        first = int(np.flatnonzero(mask)[0])
        vocabulary[label] = class_name(str(state.sources[first]), label)
    names = np.array([None if v is None else vocabulary[str(v)] for v in state.labels], dtype=object)
    xy = None
    if umap is not None and len(umap):
        xy = np.full((state.n, 2), np.nan, dtype=np.float32)
        rows = np.array([state.position[str(c)] for c in umap["cell_id"]], dtype=np.int64)
        xy[rows, 0] = umap["x"].to_numpy(dtype=np.float32)
        xy[rows, 1] = umap["y"].to_numpy(dtype=np.float32)
    return Lookups(
        label_masks=label_masks,
        source_masks=source_masks,
        label_names=names,
        vocabulary=vocabulary,
        xy=xy,
        known_labels=", ".join(sorted(label_masks)[:40]),
        known_sources=", ".join(sorted(source_masks)),
    )
