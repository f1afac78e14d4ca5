"""The probe's classifiers: the kNN of ssl_cyto.models.knn gives what the probe's own kNN gave."""

from __future__ import annotations

import numpy as np

from ssl_cyto.evaluation.classifiers import knn_neighbours, linear_probe, run_classifiers
from ssl_cyto.evaluation.protocol import FAST_C
from ssl_cyto.evaluation.splits import Task
from ssl_cyto.models.knn import cosine_topk, weighted_vote


def _reference_knn(train: np.ndarray, test: np.ndarray, train_y: np.ndarray, k: int, n_classes: int):
    """The probe's hand-written kNN before the move (exact cosine top-k, exp(sim / 0.07) votes)."""
    db = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    q = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    s = q @ db.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    sims = np.take_along_axis(s, idx, 1)
    w = np.exp((sims - sims.max(axis=1, keepdims=True)) / 0.07)
    votes = np.zeros((len(q), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(q)), k), train_y[idx].ravel()), w.ravel())
    return sims, idx, votes.argmax(1)


def _blobs(seed: int = 4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 2
    train_y = np.repeat(np.arange(3), 30)
    train = (centres[train_y] + rng.normal(size=(90, 16))).astype(np.float32)
    test_y = np.repeat(np.arange(3), 10)
    test = (centres[test_y] + rng.normal(size=(30, 16))).astype(np.float32)
    return train, train_y, test, test_y


def test_knn_matches_the_former_implementation() -> None:
    train, train_y, test, test_y = _blobs()
    sims, idx = knn_neighbours(train, test, 20)
    ref_sims, ref_idx, ref_pred = _reference_knn(train, test, train_y, 20, 3)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, rtol=1e-5, atol=1e-6)
    pred = np.asarray(weighted_vote(sims, train_y[idx], 3, 0.07))
    np.testing.assert_array_equal(pred, ref_pred)
    assert (pred == test_y).mean() > 0.8
    # k is capped at the training cells
    s2, i2 = knn_neighbours(train[:5], test, 20)
    assert s2.shape == i2.shape == (30, 5)


def test_knn_vote_weights() -> None:
    # one very similar neighbour of class 1 outweighs two weaker ones of class 0 at T=0.07
    sims = np.array([[0.9, 0.5, 0.5]])
    labels = np.array([[1, 0, 0]])
    assert np.asarray(weighted_vote(sims, labels, 2, 0.07))[0] == 1
    assert np.asarray(weighted_vote(sims, labels, 2, 100.0))[0] == 0
    assert np.asarray(weighted_vote(sims[:, :1], labels[:, :1], 2, 0.07))[0] == 1


def test_cosine_topk_sorted() -> None:
    train, _, test, _ = _blobs(5)
    sims, idx = (np.asarray(a) for a in cosine_topk(train, test, 5))
    assert idx.shape == (30, 5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_linear_probe_fast_and_sweep() -> None:
    train, train_y, test, test_y = _blobs(6)
    pred, info = linear_probe(train, train_y, test, 3, fast=True)
    assert info["C"] == FAST_C and (pred == test_y).mean() > 0.8
    _, info = linear_probe(train, train_y, test, 3, fast=False, cs=(0.01, 1.0))
    assert info["C"] in (0.01, 1.0) and set(info["sweep"]) == {"0.01", "1.0"}
    pred, info = linear_probe(train, np.zeros(90, np.int64), test, 1)
    assert (pred == 0).all() and info["C"] is None


def test_run_classifiers_pools_folds() -> None:
    train, train_y, test, test_y = _blobs(7)
    x = np.vstack([train, test])
    labels = np.concatenate([train_y, test_y])
    tr, te = np.arange(90), np.arange(90, 120)
    task = Task("t", "source", "s", "s", ["a", "b", "c"], labels, [(tr, te)])
    fp = run_classifiers(x, task, fast=True, seed=0, fractions=(0.1, 1.0))
    np.testing.assert_array_equal(fp.y_true, test_y)
    assert set(fp.preds) == {"linear", "knn1", "knn20"}
    assert fp.neighbours.shape == (30, 10)
    assert set(fp.efficiency) == {"0.1"} and set(fp.efficiency["0.1"]) == {"linear", "knn20"}
    assert (fp.preds["knn20"] == test_y).mean() > 0.8
    np.testing.assert_array_equal(
        fp.preds["knn1"], train_y[knn_neighbours(*_zscored(train, test), 1)[1][:, 0]]
    )


def _zscored(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    return (train - mu) / sd, (test - mu) / sd


def test_faiss_knn_equals_the_exact_all_pairs_knn() -> None:
    from ssl_cyto.evaluation.classifiers import knn_neighbours
    from ssl_cyto.models.knn import cosine_topk

    rng = np.random.default_rng(7)
    xtr, xte = rng.normal(size=(300, 24)), rng.normal(size=(80, 24))
    sims, idx = knn_neighbours(xtr, xte, 20)
    ref_s, ref_i = cosine_topk(xtr, xte, 20)
    assert np.array_equal(idx, np.asarray(ref_i))
    np.testing.assert_allclose(sims, np.asarray(ref_s), atol=1e-5)
    assert knn_neighbours(xtr[:5], xte, 20)[1].shape == (80, 5)  # k capped at the training cells
