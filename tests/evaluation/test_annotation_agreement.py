"""Rater agreement: Cohen's kappa (scikit-learn's) against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ssl_cyto.evaluation.annotation_agreement import agreement, agreement_json, cohen_kappa, format_agreement

# gold, reannot1, reannot2 of 7 re-annotated cells (cell 7 lacks reannot2) + 2 cells not re-annotated
FIXTURE = """\
AML-Cytomorphology/A/A_0001.tiff A A A
AML-Cytomorphology/A/A_0002.tiff A B B
AML-Cytomorphology/B/B_0001.tiff B B B
AML-Cytomorphology/B/B_0002.tiff B B UNC
AML-Cytomorphology/B/B_0003.tiff B C C
AML-Cytomorphology/C/C_0001.tiff C C C
AML-Cytomorphology/A/A_0003.tiff A A nan
AML-Cytomorphology/A/A_0004.tiff A nan nan
C/C_0002.tiff C nan nan
"""


def test_kappa_by_hand() -> None:
    # p_o = 4/6; marginals A 2/1, B 3/3, C 1/2 -> p_e = 13/36; kappa = (24-13)/(36-13) = 11/23
    a = ["A", "A", "B", "B", "B", "C"]
    b = ["A", "B", "B", "B", "C", "C"]
    assert cohen_kappa(a, b) == pytest.approx(11 / 23)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"]))  # chance agreement 1: undefined
    with pytest.raises(ValueError):
        cohen_kappa(["A"], [])


def test_kappa_matches_sklearn() -> None:
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 200))
        a = rng.choice(list("ABCDE"), n)
        b = np.where(rng.uniform(size=n) < 0.6, a, rng.choice(list("ABCDEF"), n))
        assert cohen_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b))


def test_agreement_fixture(tmp_path: Path) -> None:
    path = tmp_path / "annotations.dat"
    path.write_text(FIXTURE)
    res = agreement(tmp_path)  # the folder; the file is found inside
    assert res["cells"] == 9 and res["reannotated"] == 7
    p = res["pairs"]
    # gold vs reannot1 over 7 cells: 5 agree; marginals A 3/2, B 3/3, C 1/2 -> p_e = 17/49 -> kappa 18/32
    g1 = p["gold_vs_reannot1"]["with_unc"]
    assert (g1["n"], g1["agree"]) == (7, 5)
    assert g1["accuracy"] == pytest.approx(5 / 7)
    assert g1["kappa"] == pytest.approx(18 / 32)
    assert p["gold_vs_reannot1"]["without_unc"]["kappa"] == pytest.approx(18 / 32)
    # gold vs reannot2, UNC kept: 3/6 agree, p_e = 10/36 -> 8/26; UNC dropped: 3/5, p_e = 8/25 -> 7/17
    g2 = p["gold_vs_reannot2"]
    assert (g2["with_unc"]["n"], g2["with_unc"]["accuracy"]) == (6, pytest.approx(0.5))
    assert g2["with_unc"]["kappa"] == pytest.approx(8 / 26)
    assert (g2["without_unc"]["n"], g2["without_unc"]["excluded_unc"]) == (5, 1)
    assert g2["without_unc"]["kappa"] == pytest.approx(7 / 17)
    # reannot1 vs reannot2: 5/6 agree, p_e = 11/36 -> 19/25; without UNC perfect agreement
    r12 = p["reannot1_vs_reannot2"]
    assert r12["with_unc"]["kappa"] == pytest.approx(19 / 25)
    assert r12["without_unc"]["kappa"] == pytest.approx(1.0)
    assert r12["without_unc"]["accuracy"] == pytest.approx(1.0)


def test_format_and_json(synth_aml: Path) -> None:
    res = agreement(synth_aml)
    assert "gold_vs_reannot1" in format_agreement(res) and "kappa" in format_agreement(res)
    assert "NaN" not in agreement_json(res)
