"""The one kNN of the project: cosine top-k neighbours and a temperature-weighted vote.

The classifier is the weighted kNN of Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018, as used to evaluate and monitor DINO (Caron et al., ICCV 2021):
each of the ``k`` most cosine-similar reference cells votes for its label with weight
``exp(sim / T)`` (k = 20, T = 0.07 by default); the label with the largest total wins (the lowest
label on exact ties). The online kNN callback of training and the evaluation's kNN metrics both use
it.

It is written here in torch rather than taken from scikit-learn's ``KNeighborsClassifier`` because
the vote weights are ``exp(sim / T)`` (scikit-learn weighs by inverse distance or a callable on
distances, and materialises the neighbour graph through its own metric code), because it runs on
whatever device the embeddings are on (the callback's GPU tensors), and because the similarity
matrix is computed in chunks of queries so memory stays bounded on 100k-cell evaluations.

Every function takes torch tensors or numpy arrays and returns the same kind.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["cosine_topk", "knn_loo_accuracy", "knn_predict", "weighted_vote"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
#: Queries per block of the similarity matrix.
CHUNK = 4096


def _tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def _like(t: torch.Tensor, template: Any) -> Any:
    return t if isinstance(template, torch.Tensor) else t.cpu().numpy()


def cosine_topk(
    reference: ArrayT, queries: ArrayT, k: int, exclude_self: bool = False, chunk: int = CHUNK
) -> tuple[ArrayT, ArrayT]:
    """Exact top-``k`` cosine neighbours of each query among ``reference``.

    Args:
        reference: ``(N, D)`` reference embeddings (not necessarily normalised).
        queries: ``(M, D)`` query embeddings.
        k: neighbours per query (capped at ``N``, or ``N - 1`` with ``exclude_self``).
        exclude_self: ``queries`` are ``reference`` itself (leave-one-out): query ``i`` never gets
            reference ``i`` as a neighbour.
        chunk: queries per block of the ``(M, N)`` similarity matrix.

    Returns:
        ``(similarities float32, indices int64)``, both ``(M, k')``, sorted by decreasing similarity.

    Raises:
        ValueError: dimensions differ, or ``exclude_self`` with ``M != N``.
    """
    ref = torch.nn.functional.normalize(_tensor(reference, torch.float32), dim=1)
    q = torch.nn.functional.normalize(_tensor(queries, torch.float32).to(ref.device), dim=1)
    if ref.shape[1] != q.shape[1]:
        raise ValueError(f"reference has dimension {ref.shape[1]}, queries {q.shape[1]}")
    if exclude_self and ref.shape[0] != q.shape[0]:
        raise ValueError(f"exclude_self needs queries == reference, got {q.shape[0]} and {ref.shape[0]} rows")
    k = max(0, min(k, ref.shape[0] - (1 if exclude_self else 0)))
    sims_out = torch.empty(q.shape[0], k, dtype=torch.float32, device=ref.device)
    idx_out = torch.empty(q.shape[0], k, dtype=torch.int64, device=ref.device)
    for start in range(0, q.shape[0], max(1, chunk)):
        s = q[start : start + chunk] @ ref.T
        if exclude_self:
            rows = torch.arange(s.shape[0], device=s.device)
            s[rows, rows + start] = -float("inf")
        top_s, top_i = s.topk(k, dim=1)
        sims_out[start : start + chunk] = top_s
        idx_out[start : start + chunk] = top_i
    return _like(sims_out, queries), _like(idx_out, queries)


def weighted_vote(
    sims: ArrayT, neighbour_labels: ArrayT, n_classes: int, temperature: float = 0.07, k: int | None = None
) -> ArrayT:
    """Temperature-weighted vote of precomputed neighbours (Wu et al. 2018).

    Args:
        sims: ``(M, K)`` cosine similarities of each query's neighbours.
        neighbour_labels: ``(M, K)`` integer labels of those neighbours (``0 .. n_classes - 1``).
        n_classes: number of classes.
        temperature: vote temperature ``T`` (weights ``exp(sim / T)``).
        k: use the first ``k`` neighbours only (default all ``K``).

    Returns:
        ``(M,)`` int64 predicted labels (the lowest label on exact ties).
    """
    s = _tensor(sims, torch.float64)
    lab = _tensor(neighbour_labels, torch.int64).to(s.device)
    if k is not None:
        s, lab = s[:, :k], lab[:, :k]
    votes = torch.zeros(s.shape[0], n_classes, dtype=torch.float64, device=s.device)
    if s.shape[1]:
        # subtracting the row maximum keeps exp() finite; it scales a row's votes, not their argmax
        w = torch.exp((s - s.max(dim=1, keepdim=True).values) / temperature)
        votes.scatter_add_(1, lab, w)
    return _like(votes.argmax(dim=1), sims)


def knn_predict(
    reference: ArrayT,
    reference_labels: Any,
    queries: ArrayT,
    k: int = 20,
    n_classes: int | None = None,
    temperature: float = 0.07,
    chunk: int = CHUNK,
) -> ArrayT:
    """Weighted cosine kNN classifier: labels of ``queries`` from ``reference`` (int64, same kind as ``queries``)."""
    y = _tensor(reference_labels, torch.int64)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    sims, idx = cosine_topk(_tensor(reference), _tensor(queries), k, chunk=chunk)
    pred = weighted_vote(sims, y.to(idx.device)[idx], n_classes, temperature)
    return _like(pred, queries)


def knn_loo_accuracy(emb: Any, labels: Any, k: int = 20, temperature: float = 0.07) -> float:
    """Leave-one-out weighted kNN accuracy: each labelled embedding classified by the others.

    Args:
        emb: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer class indices; cells with a negative label are ignored.
        k: neighbours (capped at ``N - 1``).
        temperature: vote temperature.

    Returns:
        Accuracy in [0, 1]; ``nan`` with fewer than two labelled cells.
    """
    e, y = _tensor(emb, torch.float32), _tensor(labels, torch.int64).to(_tensor(emb).device)
    keep = y >= 0
    e, y = e[keep], y[keep]
    if e.shape[0] < 2:
        return float("nan")
    sims, idx = cosine_topk(e, e, k, exclude_self=True)
    pred = weighted_vote(sims, y[idx], int(y.max()) + 1, temperature)
    return float((pred == y).double().mean())
