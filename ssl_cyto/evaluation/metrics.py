"""Classification metrics with bootstrap intervals, kNN prediction and label-efficiency subsets.

All metrics work on integer class codes ``0..K-1`` and are computed from the confusion matrix, so a
bootstrap replicate costs one ``bincount``; they equal scikit-learn's definitions (checked in the
tests):

* accuracy = sum_k C[k,k] / n
* balanced accuracy = mean over classes present in ``y_true`` of recall_k (sklearn's
  ``balanced_accuracy_score``)
* F1_k = 2 C[k,k] / (support_k + predicted_k) (0 when both are 0); macro F1 = mean of F1_k over the
  classes present in ``y_true`` or ``y_pred``; weighted F1 = sum_k support_k F1_k / n

Bootstrap (Efron & Tibshirani 1993): resample the test cells with replacement ``n`` times (seeded),
recompute the metric, report the 2.5th and 97.5th percentiles (percentile interval). The paired
bootstrap applies the same resampled cells to two models' predictions and reports the interval of the
difference; "A beats B" means that interval lies above 0.

kNN follows Wu et al. 2018 / DINO (Caron et al. 2021): cosine similarity, the k nearest training cells
vote with weight ``exp(sim / T)``, T = 0.07.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CI",
    "METRIC_NAMES",
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_metrics",
    "paired_bootstrap_metrics",
    "classification_metrics",
    "confusion",
    "cosine_neighbours",
    "f1_macro",
    "f1_weighted",
    "knn_predict",
    "knn_vote",
    "label_subsample",
    "paired_bootstrap_diff",
    "per_class_report",
]

METRIC_NAMES = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted")


class CI(NamedTuple):
    """A point estimate with its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def fmt(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _codes(y_true, y_pred, n_classes: int | None):
    import numpy as np

    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    if n_classes is None:
        n_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (t.min() < 0 or p.min() < 0):
        raise ValueError("class codes must be >= 0 (encode labels as 0..K-1 first)")
    return t, p, max(n_classes, 1)


def confusion(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Confusion matrix C[true, pred] of integer codes (K x K, int64)."""
    import numpy as np

    t, p, k = _codes(y_true, y_pred, n_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _acc(cm: np.ndarray) -> float:
    n = cm.sum()
    return float(cm.trace() / n) if n else 0.0


def _bacc(cm: np.ndarray) -> float:
    import numpy as np

    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
    import numpy as np

    denom = cm.sum(1) + cm.sum(0)
    return np.where(denom > 0, 2.0 * np.diag(cm) / np.maximum(denom, 1), 0.0)


def _f1_macro(cm: np.ndarray) -> float:
    import numpy as np

    present = (cm.sum(1) + cm.sum(0)) > 0
    return float(np.mean(_f1_per_class(cm)[present])) if present.any() else 0.0


def _f1_weighted(cm: np.ndarray) -> float:
    support = cm.sum(1)
    n = support.sum()
    return float((_f1_per_class(cm) * support).sum() / n) if n else 0.0


_FROM_CM: dict[str, Callable[[np.ndarray], float]] = {
    "accuracy": _acc,
    "balanced_accuracy": _bacc,
    "f1_macro": _f1_macro,
    "f1_weighted": _f1_weighted,
}


def _cm_metric(name: str) -> Callable[..., float]:
    fn = _FROM_CM[name]

    def metric(y_true, y_pred, n_classes: int | None = None) -> float:
        return fn(confusion(y_true, y_pred, n_classes))

    metric.__name__ = name
    metric.__doc__ = f"{name} of integer-coded labels (see the module docstring for the formula)."
    metric._from_cm = fn  # type: ignore[attr-defined]
    return metric


accuracy = _cm_metric("accuracy")
balanced_accuracy = _cm_metric("balanced_accuracy")
f1_macro = _cm_metric("f1_macro")
f1_weighted = _cm_metric("f1_weighted")
METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "f1_macro": f1_macro,
    "f1_weighted": f1_weighted,
}


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro and weighted F1 of integer-coded labels."""
    cm = confusion(y_true, y_pred, n_classes)
    return {name: fn(cm) for name, fn in _FROM_CM.items()}


def per_class_report(y_true, y_pred, class_names: Sequence[str]) -> list[dict]:
    """Per-class precision, recall, F1 and support (codes index ``class_names``)."""
    import numpy as np

    cm = confusion(y_true, y_pred, len(class_names))
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    rows = []
    for k, name in enumerate(class_names):
        prec = tp[k] / predicted[k] if predicted[k] else 0.0
        rec = tp[k] / support[k] if support[k] else 0.0
        f1 = 2 * tp[k] / (support[k] + predicted[k]) if (support[k] + predicted[k]) else 0.0
        rows.append(
            {
                "class": name,
                "precision": float(prec),
                "recall": float(rec),
                "f1": float(f1),
                "support": int(support[k]),
                "predicted": int(predicted[k]),
            }
        )
    return rows


def bootstrap_indices(n_samples: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """``n`` resamples (with replacement) of ``range(n_samples)``: int array (n, n_samples), seeded."""
    import numpy as np

    if n_samples < 1:
        raise ValueError("cannot bootstrap an empty test set")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_samples, size=(n, n_samples))


def _metric_on(metric_fn: Callable[..., float], t, p, k: int) -> float:
    from_cm = getattr(metric_fn, "_from_cm", None)
    if from_cm is not None:
        import numpy as np

        return from_cm(np.bincount(t * k + p, minlength=k * k).reshape(k, k))
    return float(metric_fn(t, p))


def _percentile_ci(estimate: float, reps, alpha: float) -> CI:
    import numpy as np

    lo, hi = np.quantile(np.asarray(reps, dtype=float), [alpha / 2, 1 - alpha / 2])
    return CI(float(estimate), float(lo), float(hi))


def bootstrap_ci(
    metric_fn: Callable[..., float],
    y_true,
    y_pred,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    indices: np.ndarray | None = None,
) -> CI:
    """Percentile bootstrap interval of ``metric_fn(y_true, y_pred)`` over resampled test cells.

    Args:
        metric_fn: a metric of this module (fast path through the confusion matrix) or any
            ``f(y_true, y_pred) -> float`` (e.g. a scikit-learn metric).
        y_true, y_pred: integer class codes, equal length.
        n: bootstrap replicates (ignored when ``indices`` is given).
        seed: seed of the resampling.
        alpha: 0.05 gives the 95% interval.
        indices: precomputed resamples from :func:`bootstrap_indices` (shared between models/metrics).

    Returns:
        :class:`CI` with the estimate on the full test set and the percentile interval.
    """
    import numpy as np

    t, p, k = _codes(y_true, y_pred, None)
    idx = bootstrap_indices(t.size, n, seed) if indices is None else indices
    estimate = _metric_on(metric_fn, t, p, k)
    reps = np.fromiter((_metric_on(metric_fn, t[i], p[i], k) for i in idx), float, count=len(idx))
    return _percentile_ci(estimate, reps, alpha)


def paired_bootstrap_diff(
    metric_fn: Callable[..., float],
    y_true,
    pred_a,
    pred_b,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    indices: np.ndarray | None = None,
) -> CI:
    """Interval of ``metric(a) - metric(b)`` with the SAME resampled test cells for both models.

    "A beats B" at the 95% level means ``low > 0``. Identical predictions give exactly (0, 0, 0).
    """
    import numpy as np

    t, a, k1 = _codes(y_true, pred_a, None)
    _, b, k2 = _codes(y_true, pred_b, None)
    if a.shape != b.shape:
        raise ValueError("pred_a and pred_b must have the same length as y_true")
    k = max(k1, k2)
    idx = bootstrap_indices(t.size, n, seed) if indices is None else indices
    estimate = _metric_on(metric_fn, t, a, k) - _metric_on(metric_fn, t, b, k)
    reps = np.fromiter(
        (_metric_on(metric_fn, t[i], a[i], k) - _metric_on(metric_fn, t[i], b[i], k) for i in idx),
        float,
        count=len(idx),
    )
    return _percentile_ci(estimate, reps, alpha)


def _normalise(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_neighbours(
    database: np.ndarray, queries: np.ndarray, k: int, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine neighbours of each query in ``database`` (FAISS flat IP, else numpy).

    Returns:
        ``(similarities, indices)``, both (n_queries, k'), k' = min(k, len(database)), sorted by
        decreasing similarity (ties broken by lower database index in the numpy path).
    """
    import numpy as np

    db = _normalise(database)
    q = _normalise(queries)
    if db.shape[1] != q.shape[1]:
        raise ValueError(f"database has dimension {db.shape[1]}, queries {q.shape[1]}")
    k = min(k, db.shape[0])
    try:
        import faiss  # type: ignore[import-untyped]

        have_faiss = True
    except ImportError:
        have_faiss = False
    if have_faiss:
        index = faiss.IndexFlatIP(db.shape[1])
        index.add(db)
        sims, idx = index.search(q, k)
        return sims.astype(np.float32), idx.astype(np.int64)
    sims_out = np.empty((q.shape[0], k), np.float32)
    idx_out = np.empty((q.shape[0], k), np.int64)
    for start in range(0, q.shape[0], batch_size):
        s = q[start : start + batch_size] @ db.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -ps), axis=1)
        idx_out[start : start + batch_size] = np.take_along_axis(part, order, 1)
        sims_out[start : start + batch_size] = np.take_along_axis(ps, order, 1)
    return sims_out, idx_out


def knn_vote(
    sims: np.ndarray, neighbour_labels: np.ndarray, k: int, n_classes: int, temperature: float = 0.07
) -> np.ndarray:
    """Weighted kNN vote from precomputed neighbours (first ``k`` columns used).

    Each of the k nearest training cells votes for its class with weight ``exp(sim / temperature)``;
    the class with the largest total wins (lowest code on exact ties). Returns int64 codes.
    """
    import numpy as np

    s = np.asarray(sims, dtype=np.float64)[:, :k]
    lab = np.asarray(neighbour_labels, dtype=np.int64)[:, :k]
    # subtract the row max before exp for stability; it does not change the argmax
    w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    votes = np.zeros((s.shape[0], n_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(s.shape[0]), lab.shape[1]), lab.ravel()), w.ravel())
    return votes.argmax(axis=1).astype(np.int64)


def knn_predict(
    train_features: np.ndarray,
    train_labels,
    test_features: np.ndarray,
    k: int = 20,
    n_classes: int | None = None,
    temperature: float = 0.07,
) -> np.ndarray:
    """Weighted cosine kNN classifier (Wu et al. 2018; DINO's evaluation). Returns int64 codes."""
    import numpy as np

    y = np.asarray(train_labels, dtype=np.int64)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    sims, idx = cosine_neighbours(train_features, test_features, k)
    return knn_vote(sims, y[idx], k, n_classes, temperature)


def label_subsample(labels, fraction: float, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Stratified, seeded subset of ``fraction`` of the cells, at least ``min_per_class`` per class.

    Per class with ``n_k`` cells, ``max(min_per_class, round(fraction * n_k))`` cells are drawn
    (capped at ``n_k``). Returns sorted int64 indices into ``labels``.
    """
    import numpy as np

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    lab = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(lab):
        members = np.flatnonzero(lab == cls)
        take = min(len(members), max(min_per_class, int(round(fraction * len(members)))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def bootstrap_metrics(
    y_true,
    y_pred,
    indices: np.ndarray,
    names: Sequence[str] = METRIC_NAMES,
    alpha: float = 0.05,
) -> dict[str, CI]:
    """:func:`bootstrap_ci` for several metrics at once (one confusion matrix per replicate)."""
    import numpy as np

    t, p, k = _codes(y_true, y_pred, None)
    fns = [_FROM_CM[name] for name in names]
    full = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    reps = np.empty((len(indices), len(fns)))
    for r, i in enumerate(indices):
        cm = np.bincount(t[i] * k + p[i], minlength=k * k).reshape(k, k)
        reps[r] = [fn(cm) for fn in fns]
    return {
        name: _percentile_ci(fn(full), reps[:, j], alpha)
        for j, (name, fn) in enumerate(zip(names, fns, strict=True))
    }


def paired_bootstrap_metrics(
    y_true,
    pred_a,
    pred_b,
    indices: np.ndarray,
    names: Sequence[str] = METRIC_NAMES,
    alpha: float = 0.05,
) -> dict[str, CI]:
    """:func:`paired_bootstrap_diff` (a - b) for several metrics with the same resamples."""
    import numpy as np

    t, a, k1 = _codes(y_true, pred_a, None)
    _, b, k2 = _codes(y_true, pred_b, None)
    k = max(k1, k2)
    fns = [_FROM_CM[name] for name in names]

    def cms(i):
        ca = np.bincount(t[i] * k + a[i], minlength=k * k).reshape(k, k)
        cb = np.bincount(t[i] * k + b[i], minlength=k * k).reshape(k, k)
        return ca, cb

    full_a, full_b = cms(slice(None))
    reps = np.empty((len(indices), len(fns)))
    for r, i in enumerate(indices):
        ca, cb = cms(i)
        reps[r] = [fn(ca) - fn(cb) for fn in fns]
    return {
        name: _percentile_ci(fn(full_a) - fn(full_b), reps[:, j], alpha)
        for j, (name, fn) in enumerate(zip(names, fns, strict=True))
    }
