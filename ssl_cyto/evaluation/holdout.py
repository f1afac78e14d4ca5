"""The ``holdout20`` and ``cv5`` protocols: this project's seeded splits, linear probe, cosine kNN.

Splits: :func:`ssl_cyto.evaluation.splits.load_or_make_split` (seeded, saved, reused); tasks: per
source and, with several sources, across sources (:func:`ssl_cyto.evaluation.splits.build_tasks`).
Classifiers (:func:`ssl_cyto.evaluation.classifiers.run_classifiers`): the linear probe with its C
sweep, kNN-1 and kNN-20 through an exact FAISS inner-product index over each fold's training cells.
Scores: accuracy, balanced accuracy, macro and weighted F1 with percentile-bootstrap 95% intervals
over resampled test cells (:mod:`ssl_cyto.evaluation.bootstrap`); per-class precision, recall and F1
(beside Matek 2021 Table 1 for BM-MLL); retrieval with the training cells as database and the test
cells as queries (:func:`ssl_cyto.retrieval.metrics.retrieval_metrics`); label efficiency; the
re-annotated cells (:mod:`ssl_cyto.evaluation.rater_agreement`). "Beats" means the paired-bootstrap
95% interval of the difference (same resampled test cells for both) lies above 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ssl_cyto.data.vocabulary import MIN_CELLS_TO_SCORE
from ssl_cyto.evaluation.bootstrap import bootstrap_indices, bootstrap_metrics, paired_bootstrap_metrics
from ssl_cyto.evaluation.classifiers import FoldPredictions, run_classifiers
from ssl_cyto.evaluation.metrics import per_class_report
from ssl_cyto.evaluation.probe_report import confusion_png, intro_section, matek_reference, task_sections
from ssl_cyto.evaluation.protocol import (
    CLASSIFIERS,
    KNN_INDEX,
    LABEL_FRACTIONS,
    ProbeContext,
    ProbeError,
    Protocol,
)
from ssl_cyto.evaluation.rater_agreement import reannotation_agreement
from ssl_cyto.evaluation.splits import Task, build_tasks, load_or_make_split
from ssl_cyto.retrieval.metrics import retrieval_metrics

__all__ = ["CrossValidation", "HoldOut", "HoldoutProtocol"]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_").lower()


def _efficiency(
    tres: dict[str, Any], name: str, fp: FoldPredictions, y: np.ndarray, idx: np.ndarray, full: bool
) -> None:
    """``label_efficiency.<name>``: each label fraction's accuracy and balanced accuracy."""
    for frac, by_clf in fp.efficiency.items():
        tres["label_efficiency"].setdefault(name, {})[frac] = {
            clf: {
                k: v.as_dict()
                for k, v in bootstrap_metrics(y, p, idx, ("accuracy", "balanced_accuracy")).items()
            }
            for clf, p in by_clf.items()
        }
    if full:
        tres["label_efficiency"].setdefault(name, {})["1.0"] = {
            clf: {k: tres["metrics"][name][clf][k] for k in ("accuracy", "balanced_accuracy")}
            for clf in ("linear", "knn20")
        }


def score_task(
    task: Task, fold_preds: dict[str, FoldPredictions], ctx: ProbeContext, with_efficiency: bool
) -> dict[str, Any]:
    """Every number of one task (the ``tasks.<name>`` entry of ``probe.json``)."""
    main_name = ctx.main_model
    y = fold_preds[main_name].y_true
    idx = bootstrap_indices(len(y), ctx.n_boot, ctx.seed)
    tres: dict[str, Any] = {
        "kind": task.kind,
        "train_source": task.source_train,
        "test_source": task.source_test,
        "classes": task.classes,
        "excluded_classes": task.excluded,
        "n_test": int(len(y)),
        "n_train_per_fold": [int(len(tr)) for tr, _ in task.folds],
        "metrics": {},
        "vs_baselines": {},
        "retrieval": {},
        "per_class": {},
        "label_efficiency": {},
        "probe_info": {m: fp.info for m, fp in fold_preds.items()},
    }
    names = np.array(task.classes + ["<none>"], dtype=object)
    for name, fp in fold_preds.items():
        tres["metrics"][name] = {
            clf: {k: v.as_dict() for k, v in bootstrap_metrics(y, p, idx).items()}
            for clf, p in fp.preds.items()
        }
        tres["retrieval"][name] = retrieval_metrics(
            [task.classes[c] for c in y], [list(names[r]) for r in fp.neighbours], ks=(1, 5, 10)
        )
        tres["per_class"][name] = per_class_report(y, fp.preds["linear"], task.classes)
        _efficiency(tres, name, fp, y, idx, with_efficiency)
    main = fold_preds[main_name]
    for name, fp in fold_preds.items():
        if name != main_name:
            tres["vs_baselines"][name] = {
                clf: {
                    k: v.as_dict()
                    for k, v in paired_bootstrap_metrics(y, main.preds[clf], fp.preds[clf], idx).items()
                }
                for clf in CLASSIFIERS
            }
    if task.kind == "source" and "reannot1" in ctx.cells.columns:
        linear = {m: fp.preds["linear"] for m, fp in fold_preds.items()}
        agree = reannotation_agreement(ctx.cells, task, task.test_rows, linear, ctx.n_boot, ctx.seed)
        if agree:
            tres["reannotation"] = agree
    return tres


class HoldoutProtocol(Protocol):
    """``holdout20`` or ``cv5`` (see the module docstring)."""

    classifiers: ClassVar[tuple[str, ...]] = CLASSIFIERS
    default_min_cells: ClassVar[int] = int(MIN_CELLS_TO_SCORE)
    knn_index: ClassVar[str] = KNN_INDEX
    split_kind: ClassVar[str]
    """``holdout20`` or ``cv5``: the kind of saved split (a subclass under a new name keeps it)."""

    def __init__(self) -> None:
        self._reference = matek_reference()

    def tasks(self, ctx: ProbeContext) -> list[Task]:
        split, ctx.split_note = load_or_make_split(ctx.emb_dir, ctx.cells, self.split_kind, ctx.seed)
        tasks, notes = build_tasks(ctx.cells, split, self.split_kind, ctx.min_cells)
        ctx.notes += notes
        if not tasks:
            raise ProbeError(
                f"nothing to score in {ctx.emb_dir}: "
                + ("; ".join(notes) or f"no labelled classes with >= {ctx.min_cells} cells")
                + f"; lower the minimum with `ssl-cyto probe --min-cells N` (now {ctx.min_cells})"
            )
        return tasks

    def _fractions(self, ctx: ProbeContext) -> tuple[float, ...]:
        return () if ctx.fast else LABEL_FRACTIONS

    def predict(self, x: np.ndarray, task: Task, ctx: ProbeContext) -> FoldPredictions:
        return run_classifiers(x, task, ctx.fast, ctx.seed, self._fractions(ctx))

    def score(self, task: Task, preds: dict[str, Any], ctx: ProbeContext, out_dir: Path) -> dict[str, Any]:
        tres = score_task(task, preds, ctx, bool(self._fractions(ctx)))
        png = out_dir / f"confusion_{_slug(task.name)}.png"
        main = preds[ctx.main_model]
        title = f"{ctx.main_model}, linear probe: {task.name}"
        confusion_png(main.y_true, main.preds["linear"], task.classes, png, title)
        tres["confusion_png"] = png.name
        return tres

    def sections(self, task: Task, tres: dict[str, Any], ctx: ProbeContext) -> list[tuple[str, str]]:
        return task_sections(
            task, tres, ctx.main_model, self.split_kind, self._reference, tres["confusion_png"]
        )

    def setup(self, result: dict[str, Any], ctx: ProbeContext) -> tuple[str, tuple[str, str]]:
        return f"Probe of {ctx.main_model} against expert labels ({self.name})", intro_section(
            result, ctx.cells
        )

    def header(self, ctx: ProbeContext) -> dict[str, Any]:
        return {
            "classifiers": {
                "linear": "StandardScaler + LogisticRegression(lbfgs), C swept (or --fast C)",
                "knn1": "cosine kNN k=1 on z-scored features",
                "knn20": "cosine kNN k=20, votes exp(sim/0.07), on z-scored features",
            }
        }


class HoldOut(HoldoutProtocol):
    """``holdout20``: seeded stratified 80/20 hold-out."""

    name = "holdout20"
    split_kind = "holdout20"


class CrossValidation(HoldoutProtocol):
    """``cv5``: stratified 5-fold cross-validation, out-of-fold predictions pooled (Matek et al. 2021)."""

    name = "cv5"
    split_kind = "cv5"
