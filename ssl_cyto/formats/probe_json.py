"""``probe.json``: every number of one ``ssl-cyto probe`` run, written and read here only.

Top-level keys (every protocol): ``emb_dir``, ``protocol``, ``seed``, ``fast``, ``n_boot``,
``min_cells``, ``models`` (name -> embedding folder, the evaluated model first), ``main_model``,
``model_meta``, ``split``, ``grouped_by_patient``, ``n_cells``, ``n_labelled``, ``notes``,
``classifiers`` (name -> description), ``metrics``, ``knn_index``, ``tasks`` (name -> the task's
numbers; ``holdout20``/``cv5`` and ``dinobloom`` keep the keys they wrote before the one pipeline of
issue 23), ``seconds``; ``dinobloom`` adds ``generated_data``. Keys are only ever added.
NaN is written as ``null``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROBE_JSON", "jsonable", "read_probe_json", "write_probe_json"]

PROBE_JSON = "probe.json"
"""The file name inside the probe's output folder."""


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, tuples as lists, NaN as None and keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, np.floating):
        obj = float(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def write_probe_json(out_dir: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` to ``OUT_DIR/probe.json`` (2-space indent, trailing newline); returns the path."""
    path = Path(out_dir) / PROBE_JSON
    path.write_text(json.dumps(jsonable(result), indent=2) + "\n")
    return path


def read_probe_json(path: str | Path) -> dict[str, Any]:
    """A ``probe.json`` (or the folder holding it) as a dict."""
    p = Path(path)
    return json.loads((p / PROBE_JSON if p.is_dir() else p).read_text())
