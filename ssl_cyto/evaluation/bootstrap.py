"""Percentile-bootstrap intervals of classification metrics, single and paired.

Bootstrap (Efron & Tibshirani 1993): resample the test cells with replacement ``n`` times (seeded),
recompute the metric, report the 2.5th and 97.5th percentiles (percentile interval). The paired
bootstrap applies the same resampled cells to two models' predictions and reports the interval of the
difference; "A beats B" means that interval lies above 0.

The metrics of :mod:`ssl_cyto.evaluation.metrics` take the fast path (one ``bincount`` confusion
matrix per replicate); any other ``f(y_true, y_pred) -> float`` is called per replicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from ssl_cyto.evaluation.metrics import (
    CONFUSION_METRICS,
    METRIC_NAMES,
    METRICS,
    as_codes,
    confusion_from_codes,
)

__all__ = [
    "CI",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_metrics",
    "paired_bootstrap_diff",
    "paired_bootstrap_metrics",
    "percentile_ci",
]

_FAST = {METRICS[name]: CONFUSION_METRICS[name] for name in METRICS}


class CI(NamedTuple):
    """A point estimate with its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """``{"estimate", "low", "high"}`` (as stored in ``probe.json``)."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def fmt(self, digits: int = 3) -> str:
        """``"estimate [low, high]"``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_indices(n_samples: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """``n`` resamples (with replacement) of ``range(n_samples)``: int array (n, n_samples), seeded.

    Raises:
        ValueError: ``n_samples < 1``.
    """
    if n_samples < 1:
        raise ValueError("cannot bootstrap an empty test set")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_samples, size=(n, n_samples))


def _metric_on(metric_fn: Callable[..., float], t: np.ndarray, p: np.ndarray, k: int) -> float:
    from_cm = _FAST.get(metric_fn)
    if from_cm is not None:
        return from_cm(confusion_from_codes(t, p, k))
    return float(metric_fn(t, p))


def percentile_ci(estimate: float, reps, alpha: float = 0.05) -> CI:
    """``estimate`` with the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the replicates ``reps``."""
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
        metric_fn: a metric of :mod:`ssl_cyto.evaluation.metrics` (fast path through the confusion
            matrix) or any ``f(y_true, y_pred) -> float`` (e.g. a scikit-learn metric).
        y_true: integer class codes.
        y_pred: integer class codes, same length.
        n: bootstrap replicates (ignored when ``indices`` is given).
        seed: seed of the resampling.
        alpha: 0.05 gives the 95% interval.
        indices: precomputed resamples from :func:`bootstrap_indices` (shared between models/metrics).

    Returns:
        :class:`CI` with the estimate on the full test set and the percentile interval.
    """
    t, p, k = as_codes(y_true, y_pred)
    idx = bootstrap_indices(t.size, n, seed) if indices is None else indices
    estimate = _metric_on(metric_fn, t, p, k)
    reps = np.fromiter((_metric_on(metric_fn, t[i], p[i], k) for i in idx), float, count=len(idx))
    return percentile_ci(estimate, reps, alpha)


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

    Raises:
        ValueError: predictions of different lengths.
    """
    t, a, k1 = as_codes(y_true, pred_a)
    _, b, k2 = as_codes(y_true, pred_b)
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
    return percentile_ci(estimate, reps, alpha)


def bootstrap_metrics(
    y_true,
    y_pred,
    indices: np.ndarray,
    names: Sequence[str] = METRIC_NAMES,
    alpha: float = 0.05,
) -> dict[str, CI]:
    """:func:`bootstrap_ci` for several metrics at once (one confusion matrix per replicate)."""
    t, p, k = as_codes(y_true, y_pred)
    fns = [CONFUSION_METRICS[name] for name in names]
    full = confusion_from_codes(t, p, k)
    reps = np.empty((len(indices), len(fns)))
    for r, i in enumerate(indices):
        cm = confusion_from_codes(t[i], p[i], k)
        reps[r] = [fn(cm) for fn in fns]
    return {
        name: percentile_ci(fn(full), reps[:, j], alpha)
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
    t, a, k1 = as_codes(y_true, pred_a)
    _, b, k2 = as_codes(y_true, pred_b)
    k = max(k1, k2)
    fns = [CONFUSION_METRICS[name] for name in names]
    full_a, full_b = confusion_from_codes(t, a, k), confusion_from_codes(t, b, k)
    reps = np.empty((len(indices), len(fns)))
    for r, i in enumerate(indices):
        ca, cb = confusion_from_codes(t[i], a[i], k), confusion_from_codes(t[i], b[i], k)
        reps[r] = [fn(ca) - fn(cb) for fn in fns]
    return {
        name: percentile_ci(fn(full_a) - fn(full_b), reps[:, j], alpha)
        for j, (name, fn) in enumerate(zip(names, fns, strict=True))
    }
