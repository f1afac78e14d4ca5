"""evaluation.metrics against scikit-learn; stratified label subsets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ssl_cyto.evaluation import metrics as M


@pytest.fixture
def preds() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    y[:3] = 5  # a rare class
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, 300))
    p[p == 4] = 3  # class 4 never predicted: zero-division paths
    return y, p


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_equal_sklearn(preds) -> None:
    y, p = preds
    got = M.classification_metrics(y, p)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, p, average="weighted", zero_division=0))
    # predicted class absent from y_true: macro F1 still matches sklearn's label union
    p2 = p.copy()
    p2[:5] = 7
    assert M.f1_macro(y, p2) == pytest.approx(skm.f1_score(y, p2, average="macro", zero_division=0))
    assert M.balanced_accuracy(y, p2) == pytest.approx(skm.balanced_accuracy_score(y, p2))


def test_per_class_report_equals_sklearn(preds) -> None:
    y, p = preds
    names = [f"c{k}" for k in range(6)]
    rows = M.per_class_report(y, p, names)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
    for k, row in enumerate(rows):
        assert row["class"] == names[k]
        assert row["precision"] == pytest.approx(prec[k])
        assert row["recall"] == pytest.approx(rec[k])
        assert row["f1"] == pytest.approx(f1[k])
        assert row["support"] == sup[k]


def test_label_subsample_stratified() -> None:
    labels = np.array([0] * 500 + [1] * 50 + [2] * 3)
    idx = M.label_subsample(labels, 0.01, seed=0)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [5, 1, 1]
    assert np.array_equal(idx, M.label_subsample(labels, 0.01, seed=0))
    assert not np.array_equal(M.label_subsample(labels, 0.1, seed=0), M.label_subsample(labels, 0.1, seed=1))
    assert len(M.label_subsample(labels, 1.0)) == len(labels)
    with pytest.raises(ValueError):
        M.label_subsample(labels, 0.0)
