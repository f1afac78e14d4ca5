"""The probe's classifiers on frozen features: a linear probe with a C sweep, and weighted cosine kNN.

* **Linear probe**: StandardScaler fit on the training cells only + L-BFGS multinomial logistic
  regression (scikit-learn), C chosen on a stratified validation part of the training cells by
  balanced accuracy, then refit on all of them.
* **kNN** with k = 1 and k = 20: cosine similarity, each neighbour votes with weight ``exp(sim / T)``,
  T = 0.07 (Wu et al. 2018; DINO, Caron et al. 2021; the vote of :mod:`ssl_cyto.models.knn`, also
  used by the training callbacks). The neighbours come from an exact FAISS inner-product index
  (``IndexFlatIP`` on L2-normalised features) over the fold's training cells only — never the
  folder's approximate ``index.faiss``, which holds the test cells too. Same neighbours as the exact
  all-pairs search (:func:`ssl_cyto.models.knn.cosine_topk`), in FAISS's blocked BLAS search: memory
  stays at one block of queries, time grows as (test cells x training cells x dimension).
* kNN and retrieval run on the features z-scored with the training cells' statistics: the colour
  histogram is defined z-scored, and on raw histograms cosine similarity is dominated by the white
  background bins (PBC subset, kNN-20: 0.61 raw vs 0.88 z-scored), which would make the floor too easy
  to beat. Every model gets the same treatment.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ssl_cyto.evaluation.metrics import balanced_accuracy, label_subsample
from ssl_cyto.evaluation.protocol import (
    C_GRID,
    CLASSIFIERS,
    FAST_C,
    KNN_KS,
    LABEL_FRACTIONS,
    RETRIEVAL_K,
    SWEEP_MAX_TRAIN,
    TEMPERATURE,
)
from ssl_cyto.evaluation.splits import Task
from ssl_cyto.models.knn import weighted_vote
from ssl_cyto.retrieval.faiss_index import make_index, normalize

__all__ = ["FoldPredictions", "knn_neighbours", "linear_probe", "run_classifiers", "standardise_features"]


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(fit part, validation part) with ``fraction`` of every class in validation; None if a class has < 2."""
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if len(members) < 2:
            return None
        n_val = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        val.append(rng.choice(members, n_val, replace=False))
    v = np.sort(np.concatenate(val))
    t = np.setdiff1d(np.arange(len(y)), v)
    return t, v


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> tuple[LogisticRegression, bool]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)
        clf.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf, converged


def standardise_features(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both with the mean and standard deviation of ``x_train`` (scikit-learn StandardScaler)."""
    scaler = StandardScaler().fit(x_train)
    return (
        scaler.transform(x_train).astype(np.float32, copy=False),
        scaler.transform(x_test).astype(np.float32, copy=False),
    )


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    fast: bool = False,
    seed: int = 0,
    cs: Sequence[float] = C_GRID,
    standardise: bool = True,
) -> tuple[np.ndarray, dict]:
    """StandardScaler (fit on the training cells) + L-BFGS multinomial logistic regression.

    C is chosen on a stratified 20% validation part of the training cells (balanced accuracy; each C
    fit on at most ``SWEEP_MAX_TRAIN`` of the other cells, stratified), then the model is refit on all
    training cells.

    Args:
        x_train: training features.
        y_train: training class codes.
        x_test: test features.
        n_classes: number of classes of the task (kept for the signature; the fit sees ``y_train``).
        fast: C = ``FAST_C``, no sweep, 300 iterations.
        seed: seed of the validation part and the sweep subset.
        cs: the C grid.
        standardise: False when the caller has already z-scored the features.

    Returns:
        (test predictions as int64 codes, info with the chosen C, the sweep and convergence).
    """
    del n_classes
    xtr, xte = standardise_features(x_train, x_test) if standardise else (x_train, x_test)
    max_iter = 300 if fast else 1000
    info: dict[str, Any] = {"sweep": {}}
    if len(np.unique(y_train)) < 2:
        only = int(y_train[0])
        return np.full(len(x_test), only, dtype=np.int64), {"C": None, "note": "one class in training"}
    best_c = FAST_C
    parts = None if fast else _stratified_holdout(y_train, 0.2, seed)
    if parts is not None and len(cs) > 1:
        tr, va = parts
        if len(tr) > SWEEP_MAX_TRAIN:  # the sweep only ranks C: a stratified subset of the fit part suffices
            tr = tr[label_subsample(y_train[tr], SWEEP_MAX_TRAIN / len(tr), seed=seed)]
        info["sweep_train_cells"] = int(len(tr))
        best = -1.0
        for c in cs:
            clf, _ = _fit_logreg(xtr[tr], y_train[tr], c, max_iter)
            score = balanced_accuracy(y_train[va], clf.predict(xtr[va]))
            info["sweep"][str(c)] = score
            if score > best + 1e-12:
                best, best_c = score, c
    elif not fast:
        info["note"] = f"a class has < 2 training cells: no validation part, C = {FAST_C}"
    clf, converged = _fit_logreg(xtr, y_train, best_c, max_iter)
    info.update({"C": best_c, "converged": converged, "max_iter": max_iter})
    pred = clf.classes_[clf.predict_proba(xte).argmax(1)].astype(np.int64)
    return pred, info


def knn_neighbours(x_train: np.ndarray, x_test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine neighbours (k capped at the training cells): ``(sims, indices)`` as numpy.

    Through an exact FAISS inner-product index (``faiss.IndexFlatIP``) over the L2-normalised
    training features (:data:`ssl_cyto.evaluation.protocol.KNN_INDEX`).
    """
    k = min(k, len(x_train))
    index, _ = make_index(x_train, "flat", progress=False)
    sims, idx = index.search(normalize(x_test), k)
    return np.asarray(sims, dtype=np.float32), np.asarray(idx, dtype=np.int64)


def _vote(sims: np.ndarray, neighbour_labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """kNN-``k`` prediction from the first ``k`` neighbours."""
    return np.asarray(
        weighted_vote(sims[:, :k], neighbour_labels[:, :k], n_classes, TEMPERATURE), dtype=np.int64
    )


@dataclass
class FoldPredictions:
    """Pooled out-of-fold predictions of one model on one task."""

    y_true: np.ndarray
    preds: dict[str, np.ndarray]  # classifier -> codes
    neighbours: np.ndarray  # (n_test, RETRIEVAL_K) class codes of retrieved training cells (-1: none)
    info: list[dict]
    efficiency: dict[str, dict[str, np.ndarray]]  # fraction -> classifier -> codes


def run_classifiers(
    x: np.ndarray, task: Task, fast: bool, seed: int, fractions: Sequence[float] = LABEL_FRACTIONS
) -> FoldPredictions:
    """Linear probe, kNN-1, kNN-20 and retrieval neighbours for every fold of ``task`` on features ``x``.

    Args:
        x: features of every cell of the table (rows as in ``task.labels``).
        task: the cells and classes to score.
        fast: see :func:`linear_probe`.
        seed: seed of the probe's validation part (plus the fold number) and the label subsets.
        fractions: label fractions below 1 get their own linear probe and kNN-20 (label efficiency).
    """
    k_classes = len(task.classes)
    ys, infos = [], []
    preds: dict[str, list] = {c: [] for c in CLASSIFIERS}
    neigh = []
    eff: dict[str, dict[str, list]] = {str(f): {"linear": [], "knn20": []} for f in fractions if f < 1}
    kmax = max(max(KNN_KS), RETRIEVAL_K)
    for fi, (tr, te) in enumerate(task.folds):
        ytr, yte = task.labels[tr], task.labels[te]
        # every classifier sees features z-scored with this fold's training cells (no labels needed, so
        # the label-efficiency runs below use the same statistics)
        xtr, xte = standardise_features(x[tr], x[te])
        lin, info = linear_probe(xtr, ytr, xte, k_classes, fast=fast, seed=seed + fi, standardise=False)
        info["fold"] = fi
        info["n_train"], info["n_test"] = len(tr), len(te)
        infos.append(info)
        sims, idx = knn_neighbours(xtr, xte, kmax)
        nlab = ytr[idx]
        preds["linear"].append(lin)
        preds["knn1"].append(nlab[:, 0].astype(np.int64))
        preds["knn20"].append(_vote(sims, nlab, 20, k_classes))
        pad = np.full((len(te), RETRIEVAL_K), -1, dtype=np.int64)
        pad[:, : min(RETRIEVAL_K, nlab.shape[1])] = nlab[:, :RETRIEVAL_K]
        neigh.append(pad)
        ys.append(yte)
        for frac_key, store in eff.items():
            sub = label_subsample(ytr, float(frac_key), seed=seed + fi)
            p, _ = linear_probe(
                xtr[sub], ytr[sub], xte, k_classes, fast=fast, seed=seed + fi, standardise=False
            )
            store["linear"].append(p)
            s2, i2 = knn_neighbours(xtr[sub], xte, 20)
            store["knn20"].append(_vote(s2, ytr[sub][i2], 20, k_classes))
    cat = np.concatenate
    return FoldPredictions(
        y_true=cat(ys),
        preds={c: cat(v) for c, v in preds.items()},
        neighbours=cat(neigh),
        info=infos,
        efficiency={f: {c: cat(v) for c, v in d.items()} for f, d in eff.items()},
    )
