"""Rater agreement on AML-Cytomorphology_LMU: the human ceiling for any classifier.

``annotations.dat`` holds, for each cell, the gold label and two re-annotations (``nan`` when the cell
was not re-annotated). Matek et al. 2019 had 1,905 cells re-annotated: column 3 by a second expert,
column 4 by an expert again 11 months later. We report, over the re-annotated cells, accuracy and
Cohen's kappa for three pairs of columns:

* ``gold_vs_reannot1`` - inter-rater (gold vs second expert);
* ``reannot1_vs_reannot2`` - the pair the project brief calls intra-rater (11 months apart);
* ``gold_vs_reannot2``.

Pairs are named by column so the numbers stay correct whichever reading of the columns is right.
Each pair is computed twice: with ``UNC`` ("unassignable") as a category of its own, and without
the cells where either rater said ``UNC``. A pair uses only cells where both columns are present.

Cohen's kappa is :func:`ssl_cyto.evaluation.metrics.cohen_kappa` (the project's one wrapper of
scikit-learn's ``cohen_kappa_score``, also used for the models on re-annotated cells).

``annotations.dat`` is read by :mod:`ssl_cyto.formats.annotations` (a malformed line is an error
naming the file and line).
"""

from __future__ import annotations

import json
import math
import os

from ssl_cyto.evaluation.metrics import cohen_kappa
from ssl_cyto.formats.annotations import UNASSIGNABLE, find_annotations, read_annotations

__all__ = ["PAIRS", "agreement", "agreement_json", "cohen_kappa", "format_agreement"]

PAIRS = {
    "gold_vs_reannot1": (0, 1, "inter-rater: gold vs second expert"),
    "reannot1_vs_reannot2": (1, 2, "re-annotation vs re-annotation 11 months apart (intra-rater per brief)"),
    "gold_vs_reannot2": (0, 2, "gold vs the 11-months re-annotation"),
}


def _pair_stats(a: list[str], b: list[str]) -> dict:
    n = len(a)
    agree = sum(x == y for x, y in zip(a, b, strict=True))
    return {
        "n": n,
        "agree": agree,
        "accuracy": agree / n if n else math.nan,
        "kappa": cohen_kappa(a, b),
    }


def agreement(annotations_path: str | os.PathLike) -> dict:
    """Accuracy and Cohen's kappa between the label columns of ``annotations.dat``.

    Args:
        annotations_path: the dataset folder (``annotations.dat`` inside or beside it) or the file.

    Returns:
        ``{"file", "cells", "reannotated", "pairs": {name: {"description", "with_unc": {n, agree,
        accuracy, kappa}, "without_unc": {..., "excluded_unc"}}}}``.
    """
    path = find_annotations(annotations_path)
    rows = read_annotations(path)
    re_rows = [r for r in rows if r[2] is not None or r[3] is not None]
    out: dict = {"file": str(path), "cells": len(rows), "reannotated": len(re_rows), "pairs": {}}
    for name, (i, j, desc) in PAIRS.items():
        pairs = [(r[1 + i], r[1 + j]) for r in re_rows if r[1 + i] is not None and r[1 + j] is not None]
        a = [str(x) for x, _ in pairs]
        b = [str(y) for _, y in pairs]
        keep = [(x, y) for x, y in zip(a, b, strict=True) if x != UNASSIGNABLE and y != UNASSIGNABLE]
        without = _pair_stats([x for x, _ in keep], [y for _, y in keep])
        without["excluded_unc"] = len(a) - len(keep)
        out["pairs"][name] = {"description": desc, "with_unc": _pair_stats(a, b), "without_unc": without}
    return out


def _finite(obj: object) -> object:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def agreement_json(res: dict) -> str:
    """:func:`agreement`'s result as indented JSON (undefined values as ``null``)."""
    return json.dumps(_finite(res), indent=2)


def format_agreement(res: dict) -> str:
    """A readable table of :func:`agreement`'s result."""
    lines = [
        f"{res['file']}: {res['cells']} cells, {res['reannotated']} re-annotated",
        f"{'pair':<22} {'UNC':<8} {'n':>6} {'accuracy':>9} {'kappa':>7}",
    ]
    for name, p in res["pairs"].items():
        for key, tag in (("with_unc", "kept"), ("without_unc", "dropped")):
            s = p[key]
            lines.append(f"{name:<22} {tag:<8} {s['n']:>6} {s['accuracy']:>9.3f} {s['kappa']:>7.3f}")
    for name, p in res["pairs"].items():
        lines.append(f"  {name}: {p['description']}")
    return "\n".join(lines)
