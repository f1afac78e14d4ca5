"""evaluation.metrics against scikit-learn, and the behaviour of the bootstrap intervals."""

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


def test_bootstrap_contains_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n_cells in (100, 2000):
        y = rng.integers(0, 3, n_cells)
        p = np.where(rng.random(n_cells) < 0.8, y, (y + 1) % 3)
        ci = M.bootstrap_ci(M.accuracy, y, p, n=300, seed=0)
        assert ci.low <= ci.estimate <= ci.high
        assert ci.estimate == pytest.approx(skm.accuracy_score(y, p))
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 20x the cells -> ~4.5x narrower


def test_bootstrap_generic_metric_fn_and_shared_indices(preds) -> None:
    y, p = preds
    idx = M.bootstrap_indices(len(y), 200, seed=3)
    fast = M.bootstrap_ci(M.accuracy, y, p, indices=idx)
    slow = M.bootstrap_ci(skm.accuracy_score, y, p, indices=idx)
    assert fast == pytest.approx(slow)
    many = M.bootstrap_metrics(y, p, idx)
    assert many["accuracy"] == pytest.approx(fast)
    assert set(many) == set(M.METRIC_NAMES)


def test_paired_bootstrap_identical_is_zero_width(preds) -> None:
    y, p = preds
    d = M.paired_bootstrap_diff(M.f1_macro, y, p, p.copy(), n=200, seed=0)
    assert d == (0.0, 0.0, 0.0)
    many = M.paired_bootstrap_metrics(y, p, p.copy(), M.bootstrap_indices(len(y), 50))
    assert all(ci == (0.0, 0.0, 0.0) for ci in many.values())


def test_paired_bootstrap_detects_better_model() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 1000)
    good = np.where(rng.random(1000) < 0.9, y, (y + 1) % 4)
    bad = np.where(rng.random(1000) < 0.6, y, (y + 1) % 4)
    d = M.paired_bootstrap_diff(M.accuracy, y, good, bad, n=300, seed=0)
    assert d.low > 0
    assert d.estimate == pytest.approx(skm.accuracy_score(y, good) - skm.accuracy_score(y, bad))


def test_cosine_neighbours_and_knn() -> None:
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 16)) * 5
    train_y = np.repeat(np.arange(3), 30)
    train = centres[train_y] + rng.normal(size=(90, 16))
    test_y = np.repeat(np.arange(3), 10)
    test = centres[test_y] + rng.normal(size=(30, 16))
    sims, idx = M.cosine_neighbours(train, test, k=5)
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = test / np.linalg.norm(test, axis=1, keepdims=True)
    full = qn @ tn.T
    np.testing.assert_array_equal(idx[:, 0], full.argmax(1))
    np.testing.assert_allclose(sims[:, 0], full.max(1), rtol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    pred = M.knn_predict(train, train_y, test, k=20)
    assert (pred == test_y).mean() > 0.9


def test_knn_vote_weights() -> None:
    # one very similar neighbour of class 1 outweighs two weaker ones of class 0 at T=0.07
    sims = np.array([[0.9, 0.5, 0.5]])
    labels = np.array([[1, 0, 0]])
    assert M.knn_vote(sims, labels, k=3, n_classes=2)[0] == 1
    assert M.knn_vote(sims, labels, k=3, n_classes=2, temperature=100.0)[0] == 0
    assert M.knn_vote(sims, labels, k=1, n_classes=2)[0] == 1


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
