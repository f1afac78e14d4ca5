"""DinoBloom's published evaluation (Koch et al., MICCAI 2024): its fixed BM-MLL split and classifiers.

``ssl-cyto probe --protocol dinobloom`` runs the evaluation as DinoBloom's code runs it
(``dinov2/eval/general_fixed_split_patch_eval.py`` of marrlab/DinoBloom at commit
6c5e86de45a1c40649b61ed0b8b6d50afa363bfc), so its figures can be set beside DinoBloom's table:

* **BM-MLL** (source kind ``bm-mll``): their fixed test split, 34,266 cells listed by file name in
  ``references/dinobloom_bm_mll_test.csv`` (package data; see ``references/README.md``). A cell is
  matched by its file name (``<CLS>_<NNNNN>.jpg`` is unique across BM-MLL). Train = every other
  labelled BM-MLL cell present. No minimum of cells per class (their test split has classes of 1 to
  13 cells). Listed cells absent from the data are counted, per class, and reported.
* **Other sources** (no published split): their 5-fold protocol as their code runs it, scikit-learn
  ``StratifiedKFold(n_splits=5)`` without shuffling over the cells in ``cells.parquet`` order
  (sorted by ``cell_id``), metrics averaged over the folds.
* **Classifiers** on the raw features (no scaling): logistic regression (scikit-learn, ``lbfgs``,
  multinomial being its default, ``max_iter=1000``, ``C = D x K / 100`` for D feature dimensions and K
  training classes) and kNN with k = 1 and k = 20 (``KNeighborsClassifier``: Euclidean, uniform
  weights).
* **Metrics**: accuracy, balanced accuracy and weighted F1 (theirs) and macro F1 (weighted F1 hides
  rare classes), with percentile-bootstrap 95% intervals over the test cells
  (:func:`fold_bootstrap`: resampled within each fold, then averaged like the estimate).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from ssl_cyto.evaluation.bootstrap import CI, percentile_ci
from ssl_cyto.evaluation.metrics import CONFUSION_METRICS, METRIC_NAMES, confusion_from_codes
from ssl_cyto.evaluation.splits import labelled

__all__ = [
    "CITATION",
    "CLASSIFIERS",
    "DIFFERING_SETTINGS",
    "MOST_OF_SPLIT",
    "PUBLISHED_ROWS",
    "SPLIT_CSV",
    "cv_folds",
    "dinobloom_c",
    "fit_predict",
    "fixed_split",
    "fold_bootstrap",
    "is_bm_mll",
    "published_test_files",
]

SPLIT_CSV = Path(__file__).resolve().parent / "references" / "dinobloom_bm_mll_test.csv"
CLASSIFIERS = ("logreg", "knn1", "knn20")
"""Logistic regression, kNN k=1, kNN k=20 (DinoBloom's three)."""
MOST_OF_SPLIT = 0.5
"""Published rows are printed beside ours only when more than this fraction of their test cells is present."""
CITATION = (
    "Koch V, Wagner SJ, Kazeminia S, et al. DinoBloom: a foundation model for generalizable cell "
    "embeddings in hematology. MICCAI 2024 (arXiv:2404.05022); rows as quoted in the README of "
    "AzizbekMuminoff/CytoDINO, to be checked against the paper's table before quoting"
)
PUBLISHED_ROWS = (
    {
        "model": "DinoBloom-L (ViT-L/14, 304M)",
        "accuracy": 0.850,
        "balanced_accuracy": 0.644,
        "f1_weighted": 0.849,
    },
    {
        "model": "DinoBloom-G (ViT-g/14, 1136M)",
        "accuracy": 0.850,
        "balanced_accuracy": 0.693,
        "f1_weighted": 0.849,
    },
)
"""DinoBloom's BM-MLL rows (frozen features; the quoting source does not say which of the probes)."""
DIFFERING_SETTINGS = (
    "their features: the teacher's CLS token at 224 px with ImageNet mean/std; ours: the evaluated "
    "backbone at its own input size and normalisation",
    "their train split is the rest of their copy of BM-MLL; ours is every other labelled BM-MLL cell present",
    "the quoting source does not say which probe (logistic regression or kNN) the published rows are",
    "they give no intervals; ours are bootstrap 95% intervals over the test cells",
)


def published_test_files() -> dict[str, str]:
    """DinoBloom's BM-MLL test split: file name -> label (34,266 cells)."""
    ref = pd.read_csv(SPLIT_CSV, dtype=str)
    return dict(zip(ref["file"], ref["label"], strict=True))


def is_bm_mll(source: pd.Series) -> np.ndarray:
    """Rows whose source is of kind ``bm-mll`` (``bm-mll`` or ``bm-mll:NAME``)."""
    return source.astype(str).str.split(":", n=1).str[0].eq("bm-mll").to_numpy()


def fixed_split(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """DinoBloom's split of the labelled BM-MLL cells: ``(train mask, test mask, what was found)``.

    The info dict holds ``n_listed``, ``n_found`` (listed cells present), ``n_missing`` and
    ``missing_by_class`` (listed and absent), ``label_differs`` (present with another label than the
    list's; kept in test with the data's label) and ``n_train``.
    """
    listed = published_test_files()
    names = cells["path"].astype(str).str.rsplit("/", n=1).str[-1].to_numpy()
    bm = is_bm_mll(cells["source"]) & labelled(cells).to_numpy()
    in_list = np.array([n in listed for n in names]) & bm
    present = set(names[in_list])
    missing: dict[str, int] = {}
    for file, lab in listed.items():
        if file not in present:
            missing[lab] = missing.get(lab, 0) + 1
    labels = cells["label"].astype(str).to_numpy()
    differs = int(sum(listed[n] != lab for n, lab in zip(names[in_list], labels[in_list], strict=True)))
    info = {
        "n_listed": len(listed),
        "n_found": int(in_list.sum()),
        "n_missing": len(listed) - len(present),
        "missing_by_class": dict(sorted(missing.items(), key=lambda kv: -kv[1])),
        "label_differs": differs,
        "n_train": int((bm & ~in_list).sum()),
        "split_file": str(SPLIT_CSV.name),
    }
    return bm & ~in_list, in_list, info


def cv_folds(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Their 5-fold protocol: ``StratifiedKFold(n_splits=5)`` without shuffling, in the given row order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer than 5 cells
        return [(tr, te) for tr, te in StratifiedKFold(n_splits=5).split(np.zeros(len(y)), y)]


def dinobloom_c(dim: int, n_classes: int) -> float:
    """Their inverse regularisation strength: ``C = 1 / (100 / (D x K)) = D x K / 100``."""
    return dim * n_classes / 100.0


def fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Their three classifiers on raw features: ``({"logreg", "knn1", "knn20"} -> predictions, info)``."""
    k = len(np.unique(y_train))
    c = dinobloom_c(x_train.shape[1], k)
    preds: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"C": c, "n_classes_train": k, "n_train": len(y_train), "n_test": len(x_test)}
    if k < 2:
        only = np.full(len(x_test), int(y_train[0]), dtype=np.int64)
        info["note"] = "one class in training: every classifier predicts it"
        return {clf: only for clf in CLASSIFIERS}, info
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(C=c, solver="lbfgs", max_iter=1000).fit(x_train, y_train)
    info["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    preds["logreg"] = clf.predict(x_test).astype(np.int64)
    for kk in (1, 20):
        n = min(kk, len(y_train))
        if n < kk:
            info[f"knn{kk}_k"] = n
        knn = KNeighborsClassifier(n_neighbors=n).fit(x_train, y_train)
        preds[f"knn{kk}"] = knn.predict(x_test).astype(np.int64)
    return preds, info


def _fold_values(
    fns: list, k: int, y: np.ndarray, a: np.ndarray, b: np.ndarray | None, sel: Any
) -> np.ndarray:
    va = np.array([fn(confusion_from_codes(y[sel], a[sel], k)) for fn in fns])
    if b is None:
        return va
    return va - np.array([fn(confusion_from_codes(y[sel], b[sel], k)) for fn in fns])


def fold_bootstrap(
    y_folds: Sequence[np.ndarray],
    a_folds: Sequence[np.ndarray],
    b_folds: Sequence[np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    names: Sequence[str] = METRIC_NAMES,
) -> dict[str, CI]:
    """Metrics averaged over folds (one fold: the fixed split) with percentile-bootstrap intervals.

    Each replicate resamples the test cells of every fold (seeded), computes the metric per fold and
    averages over folds, as the estimate is. With ``b_folds`` the result is the paired difference
    ``a - b`` on the same resamples.
    """
    rng = np.random.default_rng(seed)
    k = int(max(max(int(y.max(initial=0)) for y in y_folds), max(int(p.max(initial=0)) for p in a_folds))) + 1
    if b_folds is not None:
        k = max(k, max(int(p.max(initial=0)) for p in b_folds) + 1)
    fns = [CONFUSION_METRICS[n] for n in names]
    est = np.zeros(len(fns))
    reps = np.zeros((n_boot, len(fns)))
    for f, (y, a) in enumerate(zip(y_folds, a_folds, strict=True)):
        b = None if b_folds is None else b_folds[f]
        idx = rng.integers(0, len(y), size=(n_boot, len(y)))

        est += _fold_values(fns, k, y, a, b, slice(None))
        for r in range(n_boot):
            reps[r] += _fold_values(fns, k, y, a, b, idx[r])
    n = len(y_folds)
    return {name: percentile_ci(float(est[j] / n), reps[:, j] / n, 0.05) for j, name in enumerate(names)}
