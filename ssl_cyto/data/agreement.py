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

Cohen's kappa (Cohen 1960, *Educ. Psychol. Meas.* 20:37): ``(p_o - p_e) / (1 - p_e)``, where ``p_o``
is the observed agreement and ``p_e = sum_k p_a(k) p_b(k)`` the agreement expected from the two
raters' marginal frequencies. When ``p_e == 1`` (both raters used one and the same class) kappa is
undefined and reported as ``nan`` (as scikit-learn's ``cohen_kappa_score`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

UNC = "UNC"
PAIRS = {
    "gold_vs_reannot1": (0, 1, "inter-rater: gold vs second expert"),
    "reannot1_vs_reannot2": (1, 2, "re-annotation vs re-annotation 11 months apart (intra-rater per brief)"),
    "gold_vs_reannot2": (0, 2, "gold vs the 11-months re-annotation"),
}


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels for the same items.

    Args:
        a: labels of rater A.
        b: labels of rater B (same length).

    Returns:
        Kappa in [-1, 1]; ``nan`` for no items or when chance agreement is 1 (both raters used a
        single, identical class: kappa is undefined, as in scikit-learn).
    """
    if len(a) != len(b):
        raise ValueError(f"kappa needs equal lengths (got {len(a)} and {len(b)})")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    if p_e == 1.0:
        return math.nan
    return (p_o - p_e) / (1.0 - p_e)


def read_annotations(path: str | Path) -> list[tuple[str, str | None, str | None, str | None]]:
    """Rows ``(path, gold, reannot1, reannot2)`` of an ``annotations.dat`` (``nan`` -> None).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line has fewer than 2 or more than 4 fields (the message gives the line number).
    """
    p = Path(path)
    rows = []
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if not 2 <= len(parts) <= 4:
                raise ValueError(
                    f"{p}:{lineno}: expected 'path gold reannot1 reannot2', got {line.strip()!r}"
                )
            cols = [None if x.lower() == "nan" else x for x in parts[1:]] + [None] * (4 - len(parts))
            rows.append((parts[0], cols[0], cols[1], cols[2]))
    return rows


def _find_annotations(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for cand in (p / "annotations.dat", p.parent / "annotations.dat"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"{p}: no annotations.dat there (nor beside it); give the AML-Cytomorphology_LMU folder or the file"
    )


def _pair_stats(a: list[str], b: list[str]) -> dict:
    n = len(a)
    agree = sum(x == y for x, y in zip(a, b, strict=True))
    return {
        "n": n,
        "agree": agree,
        "accuracy": agree / n if n else math.nan,
        "kappa": cohen_kappa(a, b),
    }


def agreement(annotations_path: str | Path) -> dict:
    """Accuracy and Cohen's kappa between the label columns of ``annotations.dat``.

    Args:
        annotations_path: the dataset folder (``annotations.dat`` inside or beside it) or the file.

    Returns:
        ``{"file", "cells", "reannotated", "pairs": {name: {"description", "with_unc": {n, agree,
        accuracy, kappa}, "without_unc": {..., "excluded_unc"}}}}``.
    """
    path = _find_annotations(annotations_path)
    rows = read_annotations(path)
    re_rows = [r for r in rows if r[2] is not None or r[3] is not None]
    out: dict = {"file": str(path), "cells": len(rows), "reannotated": len(re_rows), "pairs": {}}
    for name, (i, j, desc) in PAIRS.items():
        pairs = [(r[1 + i], r[1 + j]) for r in re_rows if r[1 + i] is not None and r[1 + j] is not None]
        a = [str(x) for x, _ in pairs]
        b = [str(y) for _, y in pairs]
        keep = [(x, y) for x, y in zip(a, b, strict=True) if x != UNC and y != UNC]
        without = _pair_stats([x for x, _ in keep], [y for _, y in keep])
        without["excluded_unc"] = len(a) - len(keep)
        out["pairs"][name] = {"description": desc, "with_unc": _pair_stats(a, b), "without_unc": without}
    return out


def _finite(obj):
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data agreement``."""
    parser.add_argument("path", help="the AML-Cytomorphology_LMU folder, or its annotations.dat")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    """``ssl-cyto data agreement PATH``."""
    try:
        res = agreement(args.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res["reannotated"] == 0:
        print(f"error: {res['file']}: no re-annotated cells (columns 3 and 4 are all nan)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_finite(res), indent=2))
    else:
        print(format_agreement(res))
    return 0
