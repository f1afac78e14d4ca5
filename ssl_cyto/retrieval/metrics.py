"""Label-based retrieval metrics: precision@k, AP@k and mAP@k.

A retrieved neighbour is *relevant* when its expert label equals the query's label. With
``rel_i`` the relevance (0 or 1) of the neighbour at rank ``i`` (ranks start at 1):

* ``P@k = (1 / k) * sum_{i<=k} rel_i``
* ``AP@k = (1 / sum_{i<=k} rel_i) * sum_{i<=k} P@i * rel_i``, and ``AP@k = 0`` when no relevant
  item is in the top ``k``
* ``mAP@k`` = mean of ``AP@k`` over the queries.

This is the usual "AP at cut-off k" normalised by the number of relevant items *retrieved* (not by
the number of relevant items in the database), as in e.g. the retrieval evaluation of
Musgrave et al., "A Metric Learning Reality Check", ECCV 2020 (their MAP@R uses R = class size as
the cut-off; here the cut-off is a fixed k).

Missing neighbours (fewer than ``k`` columns, or ``None``/NaN entries, e.g. FAISS returning ``-1``
when the database holds fewer than ``k`` cells) count as not relevant. Queries without a label are
skipped and counted in ``n_unlabelled_queries``.

Pure Python + numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FORMULA",
    "average_precision_at_k",
    "precision_at_k",
    "relevance_matrix",
    "retrieval_metrics",
]

FORMULA = (
    "rel_i = 1 if the label of the neighbour at rank i equals the query label, else 0 (missing "
    "neighbours count as 0); P@k = (1/k) * sum_{i<=k} rel_i; AP@k = (1 / sum_{i<=k} rel_i) * "
    "sum_{i<=k} P@i * rel_i (0 when no relevant item is in the top k); mAP@k = mean of AP@k over "
    "labelled queries"
)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:  # pandas.NA / numpy NaN scalars
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def relevance_matrix(
    query_labels: Sequence[Any], neighbour_labels: Sequence[Sequence[Any]], k: int
) -> np.ndarray:
    """The (n_queries, k) 0/1 relevance matrix, padded with 0 where fewer than ``k`` neighbours exist.

    Args:
        query_labels: one label per query (``None``/NaN allowed: that row is all 0).
        neighbour_labels: per query, the labels of its neighbours in rank order.
        k: the cut-off.

    Returns:
        ``numpy.ndarray`` of dtype float64 and shape ``(len(query_labels), k)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(query_labels) != len(neighbour_labels):
        raise ValueError(
            f"query_labels has {len(query_labels)} entries but neighbour_labels has {len(neighbour_labels)} rows; "
            "give one row of neighbour labels per query"
        )
    rel = np.zeros((len(query_labels), k), dtype=np.float64)
    for q, (ql, row) in enumerate(zip(query_labels, neighbour_labels, strict=True)):
        if _is_missing(ql):
            continue
        for i, nl in enumerate(list(row)[:k]):
            if not _is_missing(nl) and nl == ql:
                rel[q, i] = 1.0
    return rel


def precision_at_k(rel: Any) -> np.ndarray:
    """P@k per query from a (n, k) relevance matrix: the fraction of the top k that is relevant."""
    rel = np.asarray(rel, dtype=np.float64)
    return rel.mean(axis=1) if rel.shape[1] else np.zeros(rel.shape[0])


def average_precision_at_k(rel: Any) -> np.ndarray:
    """AP@k per query from a (n, k) relevance matrix (see the module docstring for the formula).

    ``AP@k = (1 / sum_{i<=k} rel_i) * sum_{i<=k} P@i * rel_i``, 0 when the top k holds no relevant item.
    """
    rel = np.asarray(rel, dtype=np.float64)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be a 2-D (queries x k) array, got shape {rel.shape}")
    ranks = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    p_at_i = np.cumsum(rel, axis=1) / ranks
    hits = rel.sum(axis=1)
    num = (p_at_i * rel).sum(axis=1)
    return np.divide(num, hits, out=np.zeros_like(num), where=hits > 0)


def retrieval_metrics(
    query_labels: Sequence[Any],
    neighbour_labels: Sequence[Sequence[Any]],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Precision@k and mAP@k of label-based retrieval, overall and per class.

    Typical use (helper EVAL's probe): database = training cells, queries = test cells; the
    neighbours of each test cell are searched among the training cells and their labels passed here.

    Args:
        query_labels: the label of each query cell (``None``/NaN: unlabelled, skipped).
        neighbour_labels: per query, the labels of its retrieved neighbours in rank order (rank 1
            first). Rows may be shorter than ``max(ks)``; missing neighbours count as not relevant.
        ks: cut-offs; ``precision@k`` and ``mAP@k`` are reported for each.

    Returns:
        ``{"precision@1": .., "precision@5": .., "precision@10": .., "mAP@1": .., "mAP@5": ..,
        "mAP@10": .., "n_queries": int, "n_unlabelled_queries": int, "ks": [...], "formula": str,
        "per_class": {label: {"precision@1": .., ..., "n_queries": int}}}``. Values are plain floats
        (NaN when there is no labelled query).
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    kmax = ks[-1]
    rel = relevance_matrix(query_labels, neighbour_labels, kmax)
    labelled = np.array([not _is_missing(q) for q in query_labels], dtype=bool)

    def summarise(mask: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        n = int(mask.sum())
        for k in ks:
            sub = rel[mask, :k]
            out[f"precision@{k}"] = float(precision_at_k(sub).mean()) if n else float("nan")
        for k in ks:
            sub = rel[mask, :k]
            out[f"mAP@{k}"] = float(average_precision_at_k(sub).mean()) if n else float("nan")
        out["n_queries"] = n
        return out

    result = summarise(labelled)
    result["n_unlabelled_queries"] = int((~labelled).sum())
    result["ks"] = ks
    result["formula"] = FORMULA
    per_class: dict[str, dict[str, Any]] = {}
    labels = sorted({str(q) for q, ok in zip(query_labels, labelled, strict=True) if ok})
    str_labels = np.array([str(q) if ok else "" for q, ok in zip(query_labels, labelled, strict=True)])
    for label in labels:
        per_class[label] = summarise(labelled & (str_labels == label))
    result["per_class"] = per_class
    return result
