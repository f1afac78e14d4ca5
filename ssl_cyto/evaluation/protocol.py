"""The fixed settings of ``ssl-cyto probe`` and its error class.

Every module of the probe (:mod:`~ssl_cyto.evaluation.splits`, :mod:`~ssl_cyto.evaluation.classifiers`,
:mod:`~ssl_cyto.evaluation.baselines`, :mod:`~ssl_cyto.evaluation.probe_report`,
:mod:`~ssl_cyto.evaluation.probing`) reads its constants from here, so none of them has to import
the orchestrator (which is what made ``probe`` and ``probe_report`` import each other).
"""

from __future__ import annotations

from ssl_cyto.formats.errors import InputError

__all__ = [
    "C_GRID",
    "CLASSIFIERS",
    "FAST_C",
    "KNN_KS",
    "LABEL_FRACTIONS",
    "PROTOCOLS",
    "ProbeError",
    "RETRIEVAL_K",
    "SPLIT_FILE",
    "SWEEP_MAX_TRAIN",
    "TEMPERATURE",
]

PROTOCOLS = ("holdout20", "cv5", "dinobloom")
"""``holdout20``: this project's seeded stratified 80/20 hold-out; ``cv5``: stratified 5-fold (as Matek et al.
2021); ``dinobloom``: DinoBloom's published evaluation (Koch et al. 2024: fixed BM-MLL test split, their
classifiers; :mod:`ssl_cyto.evaluation.dinobloom`)."""
C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)
"""Inverse regularisation strengths swept by the linear probe."""
FAST_C = 0.1
"""C of ``--fast`` (no sweep)."""
SWEEP_MAX_TRAIN = 20000
"""Training cells used per C of the sweep (the final fit uses all)."""
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
"""Fractions of the training labels of the label-efficiency runs."""
KNN_KS = (1, 20)
"""k of the kNN classifiers."""
RETRIEVAL_K = 10
"""Neighbours retrieved per test cell (precision@1, mAP@5, mAP@10)."""
TEMPERATURE = 0.07
"""kNN vote temperature: weight ``exp(sim / T)`` (Wu et al. 2018; DINO, Caron et al. 2021)."""
CLASSIFIERS = ("linear", "knn1", "knn20")
"""The classifiers scored for every model."""
SPLIT_FILE = "split.parquet"
"""The saved split inside the embedding folder."""


class ProbeError(InputError):
    """Bad input to the probe (missing files, mismatched embeddings, nothing to score)."""
