"""Retrieval metrics against hand-computed values (formula in ssl_cyto.retrieval.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssl_cyto.retrieval.metrics import average_precision_at_k, relevance_matrix, retrieval_metrics


def test_average_precision_hand_computed() -> None:
    rel = np.array(
        [
            [1, 0, 1, 0, 0],  # P@1=1, P@3=2/3 -> AP@5 = (1 + 2/3) / 2 = 5/6
            [0, 1, 1, 0, 0],  # P@2=1/2, P@3=2/3 -> AP@5 = (1/2 + 2/3) / 2 = 7/12
            [0, 0, 0, 0, 0],  # no relevant item -> 0
            [0, 0, 0, 0, 1],  # P@5 = 1/5 -> AP@5 = 1/5
        ]
    )
    ap = average_precision_at_k(rel)
    np.testing.assert_allclose(ap, [5 / 6, 7 / 12, 0.0, 1 / 5])


def test_retrieval_metrics_overall_and_per_class() -> None:
    queries = ["A", "A", "B", None]
    neighbours = [
        ["A", "B", "A", "B", "B"],  # AP@5 = 5/6, P@1 = 1, P@5 = 2/5
        ["B", "A", "A"],  # only 3 neighbours: missing ones count as not relevant; AP@5 = 7/12
        ["A", "A", "A", "A", "A"],  # AP@5 = 0
        ["A", "A", "A", "A", "A"],  # unlabelled query: skipped
    ]
    m = retrieval_metrics(queries, neighbours, ks=(1, 5))
    assert m["n_queries"] == 3 and m["n_unlabelled_queries"] == 1
    assert m["precision@1"] == pytest.approx(1 / 3)
    assert m["precision@5"] == pytest.approx((2 / 5 + 2 / 5 + 0) / 3)
    assert m["mAP@5"] == pytest.approx((5 / 6 + 7 / 12 + 0) / 3)
    assert m["mAP@1"] == pytest.approx(1 / 3)
    assert m["per_class"]["A"]["mAP@5"] == pytest.approx((5 / 6 + 7 / 12) / 2)
    assert m["per_class"]["A"]["n_queries"] == 2
    assert m["per_class"]["B"]["mAP@5"] == 0.0
    assert "AP@k" in m["formula"]


def test_default_keys_and_nan_without_labels() -> None:
    m = retrieval_metrics([None, float("nan")], [["A"], ["B"]])
    for key in ("precision@1", "mAP@5", "mAP@10"):
        assert math.isnan(m[key])
    assert m["per_class"] == {}


def test_relevance_matrix_validates() -> None:
    with pytest.raises(ValueError, match="one row of neighbour labels per query"):
        relevance_matrix(["A"], [["A"], ["B"]], 1)
    with pytest.raises(ValueError, match="k must be"):
        relevance_matrix(["A"], [["A"]], 0)
