"""Models scored against re-annotated cells, beside the raters' own agreement (AML-LMU).

AML-LMU's ``annotations.dat`` gives two re-annotations for part of the cells. On the test cells that
carry both, each model's linear-probe predictions are scored against the gold label and each
re-annotation (accuracy with a percentile-bootstrap interval, and Cohen's kappa,
:func:`ssl_cyto.evaluation.metrics.cohen_kappa`), beside the same figures for the raters among themselves: the human ceiling on
the same cells. ``UNC`` (unassignable) counts as a class of its own; the model is scored on its own
classes, so a rater's ``UNC`` or a class below the minimum is always a miss for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.evaluation.bootstrap import CI
from ssl_cyto.evaluation.metrics import cohen_kappa
from ssl_cyto.evaluation.splits import Task, has_value

__all__ = ["reannotation_agreement"]


def _score(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> dict:
    correct = (np.asarray(x) == np.asarray(y)).astype(float)
    reps = correct[idx].mean(1)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return {"accuracy": CI(float(correct.mean()), float(lo), float(hi)).as_dict(), "kappa": cohen_kappa(x, y)}


def reannotation_agreement(
    cells: pd.DataFrame, task: Task, rows: np.ndarray, preds: dict[str, np.ndarray], n_boot: int, seed: int
) -> dict | None:
    """Scores on the re-annotated test cells of ``task``; None when no test cell has both re-annotations.

    Args:
        cells: the embedding folder's cells (``label``, ``reannot1``, ``reannot2``).
        task: the task (its class names decode ``preds``).
        rows: the test rows in the order of the pooled predictions (``task.test_rows``).
        preds: model -> pooled linear-probe predictions (class codes).
        n_boot: bootstrap replicates of the accuracy interval.
        seed: seed of the resampling.

    Returns:
        ``{"n_cells", "raters": {pair: {"accuracy", "kappa"}}, "models": {model: {"vs gold", ...}}}``.
    """
    r1 = cells["reannot1"].to_numpy(dtype=object)[rows]
    r2 = cells["reannot2"].to_numpy(dtype=object)[rows]
    ok1 = has_value(cells["reannot1"]).to_numpy()[rows]
    ok2 = has_value(cells["reannot2"]).to_numpy()[rows]
    both = ok1 & ok2
    if not both.any():
        return None
    gold = cells["label"].astype(str).to_numpy()[rows][both]
    a1 = np.array([str(v) for v in r1[both]])
    a2 = np.array([str(v) for v in r2[both]])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold), size=(n_boot, len(gold)))

    out: dict[str, Any] = {"n_cells": int(both.sum()), "raters": {}, "models": {}}
    out["raters"]["gold vs reannot1"] = _score(a1, gold, idx)
    out["raters"]["gold vs reannot2"] = _score(a2, gold, idx)
    out["raters"]["reannot1 vs reannot2"] = _score(a1, a2, idx)
    names = np.array(task.classes, dtype=object)
    for model, p in preds.items():
        pn = np.array([str(v) for v in names[p[both]]])
        out["models"][model] = {
            "vs gold": _score(pn, gold, idx),
            "vs reannot1": _score(pn, a1, idx),
            "vs reannot2": _score(pn, a2, idx),
        }
    return out
