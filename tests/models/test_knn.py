"""The one kNN: cosine top-k against brute force, the weighted vote, leave-one-out accuracy,
numpy in -> numpy out and torch in -> torch out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_cyto.models.knn import cosine_topk, knn_loo_accuracy, knn_predict, weighted_vote


def _clusters(seed: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 5
    train_y = np.repeat(np.arange(3), 30)
    test_y = np.repeat(np.arange(3), 10)
    return centres[train_y] + rng.normal(size=(90, 16)), train_y, centres[test_y] + rng.normal(size=(30, 16)), test_y


def test_cosine_topk_matches_brute_force_in_chunks() -> None:
    train, _, test, _ = _clusters()
    sims, idx = cosine_topk(train, test, k=5, chunk=7)
    assert isinstance(sims, np.ndarray) and sims.dtype == np.float32 and idx.dtype == np.int64
    assert sims.shape == idx.shape == (30, 5)
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = test / np.linalg.norm(test, axis=1, keepdims=True)
    full = qn @ tn.T
    np.testing.assert_array_equal(idx[:, 0], full.argmax(1))
    np.testing.assert_allclose(sims, -np.sort(-full, axis=1)[:, :5], rtol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    t_sims, t_idx = cosine_topk(torch.as_tensor(train), torch.as_tensor(test), k=5)
    assert isinstance(t_sims, torch.Tensor) and torch.equal(t_idx, torch.as_tensor(idx))
    with pytest.raises(ValueError, match="dimension"):
        cosine_topk(train, test[:, :3], k=2)


def test_exclude_self_never_returns_the_query() -> None:
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    sims, idx = cosine_topk(x, x, k=50, exclude_self=True, chunk=6)
    assert idx.shape == (20, 19)  # capped at N - 1
    assert not (idx == torch.arange(20)[:, None]).any()


def test_weighted_vote_weights() -> None:
    # one very similar neighbour of class 1 outweighs two weaker ones of class 0 at T=0.07
    sims = np.array([[0.9, 0.5, 0.5]])
    labels = np.array([[1, 0, 0]])
    assert weighted_vote(sims, labels, n_classes=2)[0] == 1
    assert weighted_vote(sims, labels, n_classes=2, temperature=100.0)[0] == 0
    assert weighted_vote(sims, labels, n_classes=2, k=1)[0] == 1
    # exact tie: the lowest label wins
    assert weighted_vote(np.array([[0.5, 0.5]]), np.array([[2, 1]]), n_classes=3)[0] == 1
    out = weighted_vote(torch.tensor(sims), torch.tensor(labels), n_classes=2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64


def test_knn_predict_separates_clusters() -> None:
    train, train_y, test, test_y = _clusters()
    pred = knn_predict(train, train_y, test, k=20)
    assert isinstance(pred, np.ndarray) and (pred == test_y).mean() > 0.9


def test_knn_loo_accuracy_known_clusters() -> None:
    torch.manual_seed(0)
    centres = torch.eye(3) * 10
    labels = torch.arange(3).repeat_interleave(10)
    emb = centres[labels] + 0.1 * torch.randn(30, 3)
    assert knn_loo_accuracy(emb, labels, k=5) == 1.0
    # Random labels on the same points: about chance.
    acc = knn_loo_accuracy(emb, labels[torch.randperm(30)], k=5)
    assert acc < 0.8
    # Leave-one-out: a single point of class 2 among class-0 points cannot see itself.
    emb2 = torch.cat([torch.ones(5, 2), torch.ones(1, 2)])
    lab2 = torch.tensor([0, 0, 0, 0, 0, 2])
    assert knn_loo_accuracy(emb2, lab2, k=3) == pytest.approx(5 / 6)
    # Unlabelled cells (-1) are ignored.
    assert knn_loo_accuracy(emb, torch.where(labels == 0, -1, labels), k=5) == 1.0
    assert np.isnan(knn_loo_accuracy(emb[:1], labels[:1]))
