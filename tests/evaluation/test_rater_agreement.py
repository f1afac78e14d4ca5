"""Cohen's kappa of the re-annotation block: scikit-learn's, equal to the textbook formula."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from ssl_cyto.evaluation.metrics import cohen_kappa as kappa


def _textbook_kappa(a: list[str], b: list[str]) -> float:
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return (p_o - p_e) / (1 - p_e)


def test_kappa_equals_formula_and_undefined_is_nan() -> None:
    rng = np.random.default_rng(0)
    a = [str(v) for v in rng.choice(["NGS", "LYT", "UNC"], 200)]
    b = [v if rng.random() < 0.7 else "UNC" for v in a]
    assert kappa(a, b) == pytest.approx(_textbook_kappa(a, b))
    assert kappa(np.array(a), np.array(b)) == pytest.approx(_textbook_kappa(a, b))
    assert math.isnan(kappa(["A", "A"], ["A", "A"]))
    assert math.isnan(kappa([], []))
