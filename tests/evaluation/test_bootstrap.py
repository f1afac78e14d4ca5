"""The behaviour of the bootstrap and paired-bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ssl_cyto.evaluation import bootstrap as B
from ssl_cyto.evaluation import metrics as M


@pytest.fixture
def preds() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    y[:3] = 5  # a rare class
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, 300))
    p[p == 4] = 3  # class 4 never predicted: zero-division paths
    return y, p


def test_bootstrap_contains_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n_cells in (100, 2000):
        y = rng.integers(0, 3, n_cells)
        p = np.where(rng.random(n_cells) < 0.8, y, (y + 1) % 3)
        ci = B.bootstrap_ci(M.accuracy, y, p, n=300, seed=0)
        assert ci.low <= ci.estimate <= ci.high
        assert ci.estimate == pytest.approx(skm.accuracy_score(y, p))
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 20x the cells -> ~4.5x narrower


def test_bootstrap_generic_metric_fn_and_shared_indices(preds) -> None:
    y, p = preds
    idx = B.bootstrap_indices(len(y), 200, seed=3)
    fast = B.bootstrap_ci(M.accuracy, y, p, indices=idx)
    slow = B.bootstrap_ci(skm.accuracy_score, y, p, indices=idx)
    assert fast == pytest.approx(slow)
    many = B.bootstrap_metrics(y, p, idx)
    assert many["accuracy"] == pytest.approx(fast)
    assert set(many) == set(M.METRIC_NAMES)


def test_paired_bootstrap_identical_is_zero_width(preds) -> None:
    y, p = preds
    d = B.paired_bootstrap_diff(M.f1_macro, y, p, p.copy(), n=200, seed=0)
    assert d == (0.0, 0.0, 0.0)
    many = B.paired_bootstrap_metrics(y, p, p.copy(), B.bootstrap_indices(len(y), 50))
    assert all(ci == (0.0, 0.0, 0.0) for ci in many.values())


def test_paired_bootstrap_detects_better_model() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 1000)
    good = np.where(rng.random(1000) < 0.9, y, (y + 1) % 4)
    bad = np.where(rng.random(1000) < 0.6, y, (y + 1) % 4)
    d = B.paired_bootstrap_diff(M.accuracy, y, good, bad, n=300, seed=0)
    assert d.low > 0
    assert d.estimate == pytest.approx(skm.accuracy_score(y, good) - skm.accuracy_score(y, bad))
