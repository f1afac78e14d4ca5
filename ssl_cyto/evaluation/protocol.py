"""What a probe protocol is (:class:`Protocol`), the context it runs in, and the probe's fixed settings.

A protocol (``holdout20`` and ``cv5``: :mod:`~ssl_cyto.evaluation.holdout`; ``dinobloom``:
:mod:`~ssl_cyto.evaluation.dinobloom_probe`) is a small object that

* builds the tasks and their splits from the labelled cells (:meth:`Protocol.tasks`),
* names its classifiers and metrics (:attr:`Protocol.classifiers`, :attr:`Protocol.metrics`),
* fits and predicts them on one model's features for every fold of a task (:meth:`Protocol.predict`),
* scores a task's predictions of every model (:meth:`Protocol.score`) and renders its report sections.

The one runner (:func:`ssl_cyto.evaluation.probing.probe`) reads the folder, gets the baselines,
loops over tasks and models, checks near-duplicates, and writes ``probe.json`` through the one
writer (:func:`ssl_cyto.formats.probe_json.write_probe_json`) and the report. A new protocol is a
subclass registered with :func:`ssl_cyto.evaluation.probing.register_protocol`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ssl_cyto.formats.errors import InputError

if TYPE_CHECKING:
    from ssl_cyto.evaluation.splits import Task

__all__ = [
    "C_GRID",
    "CLASSIFIERS",
    "FAST_C",
    "KNN_INDEX",
    "KNN_KS",
    "LABEL_FRACTIONS",
    "PROTOCOLS",
    "ProbeContext",
    "ProbeError",
    "Protocol",
    "RETRIEVAL_K",
    "SPLIT_FILE",
    "SWEEP_MAX_TRAIN",
    "TEMPERATURE",
]

PROTOCOLS = ("holdout20", "cv5", "dinobloom")
"""The built-in protocols. ``holdout20``: this project's seeded stratified 80/20 hold-out; ``cv5``:
stratified 5-fold (as Matek et al. 2021); ``dinobloom``: DinoBloom's published evaluation (Koch et al.
2024: fixed BM-MLL test split, their classifiers; :mod:`ssl_cyto.evaluation.dinobloom`)."""
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
"""The classifiers of ``holdout20`` and ``cv5``."""
SPLIT_FILE = "split.parquet"
"""The saved split inside the embedding folder."""
KNN_INDEX = (
    "faiss.IndexFlatIP (exact inner product on L2-normalised features) over each fold's training cells"
)
"""How ``holdout20`` / ``cv5`` find kNN and retrieval neighbours (recorded in ``probe.json``)."""


class ProbeError(InputError):
    """Bad input to the probe (missing files, mismatched embeddings, nothing to score)."""


@dataclass
class ProbeContext:
    """What every stage of one probe run reads: the folder, its cells and the options."""

    emb_dir: Path
    feats: np.ndarray
    cells: pd.DataFrame
    model_meta: dict
    embed_meta: dict
    seed: int
    fast: bool
    n_boot: int
    min_cells: int
    notes: list[str] = field(default_factory=list)
    split_note: str = ""
    main_model: str = ""
    models: dict[str, str] = field(default_factory=dict)  # name -> embedding folder
    log: Callable[[str], None] = print
    """One progress line (the runner passes its :class:`~ssl_cyto.formats.progress.Stages`)."""


class Protocol(ABC):
    """One way of splitting, fitting and scoring (see the module docstring)."""

    name: ClassVar[str]
    classifiers: ClassVar[tuple[str, ...]]
    """The classifier names, as they key ``probe.json``'s ``metrics``."""
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted")
    """The metrics of every classifier (:data:`ssl_cyto.evaluation.metrics.METRIC_NAMES`)."""
    default_min_cells: ClassVar[int]
    """Classes with fewer labelled cells are left out unless ``--min-cells`` says otherwise."""
    knn_index: ClassVar[str]
    """How the kNN classifiers find neighbours (``probe.json``'s ``knn_index``)."""

    @abstractmethod
    def tasks(self, ctx: ProbeContext) -> list[Task]:
        """The tasks with their folds (notes go to ``ctx.notes``, the split's origin to ``ctx.split_note``)."""

    @abstractmethod
    def predict(self, x: np.ndarray, task: Task, ctx: ProbeContext) -> Any:
        """Fit and predict every classifier on every fold of ``task`` with one model's features ``x``."""

    @abstractmethod
    def score(self, task: Task, preds: dict[str, Any], ctx: ProbeContext, out_dir: Path) -> dict[str, Any]:
        """``probe.json``'s entry of ``task`` from every model's predictions (main model first)."""

    @abstractmethod
    def sections(self, task: Task, tres: dict[str, Any], ctx: ProbeContext) -> list[tuple[str, str]]:
        """The report sections of one scored task."""

    @abstractmethod
    def setup(self, result: dict[str, Any], ctx: ProbeContext) -> tuple[str, tuple[str, str]]:
        """``(report title, its "Setup" section)``."""

    def header(self, ctx: ProbeContext) -> dict[str, Any]:
        """Keys of ``probe.json`` that only this protocol writes."""
        del ctx
        return {}

    def finish(self, ctx: ProbeContext, out_dir: Path) -> None:
        """Write the protocol's own files into ``out_dir`` after the last task."""
        del ctx, out_dir
