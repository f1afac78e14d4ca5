"""``probe --protocol dinobloom``: DinoBloom's evaluation (:mod:`~ssl_cyto.evaluation.dinobloom`) run and reported.

Tasks: one per labelled source, the fixed published split for BM-MLL and their unshuffled
stratified 5-fold for the others; no cross-dataset tasks (DinoBloom has none). Every model (the
evaluated one and the baselines, :func:`ssl_cyto.evaluation.baselines.models_under_test`) gets the
same three classifiers; differences to each baseline are paired-bootstrap intervals. Writes
``report.md``, ``probe.json`` and ``split_dinobloom.csv`` (each cell's side, or its fold) into the
output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ssl_cyto.evaluation.dinobloom import (
    CITATION,
    CLASSIFIERS,
    DIFFERING_SETTINGS,
    MOST_OF_SPLIT,
    PUBLISHED_ROWS,
    cv_folds,
    fit_predict,
    fixed_split,
    fold_bootstrap,
    is_bm_mll,
)
from ssl_cyto.evaluation.probe_report import METRIC_LABELS, baseline_table
from ssl_cyto.evaluation.protocol import ProbeContext, ProbeError, Protocol
from ssl_cyto.evaluation.report import markdown_table
from ssl_cyto.evaluation.splits import Task, labelled

__all__ = [
    "GENERATED_MARKERS",
    "DinoBloomProtocol",
    "build_dinobloom_tasks",
    "is_generated",
    "published_rows_apply",
]

CLF_NAMES = {"logreg": "logistic regression", "knn1": "kNN k=1", "knn20": "kNN k=20"}
METRIC_NAMES = {  # DinoBloom's metrics first (the order of the report's columns), labels shared
    k: METRIC_LABELS[k] for k in ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")
}
GENERATED_MARKERS = (".complete", "SYNTHETIC", "synth.json")
"""Files that mark a folder written by the generator (``ssl_cyto.data.synth``)."""


def is_generated(cells: pd.DataFrame, embed_meta: dict) -> bool:
    """Whether the cells come from the generator (``synth:`` data, or a data root with a generator marker)."""
    if str(embed_meta.get("data") or "").startswith("synth:"):
        return True
    for root in sorted(set(cells["root"].astype(str))) if "root" in cells.columns else []:
        p = Path(root)
        for folder in (p, *list(p.parents)[:2]):
            if any((folder / m).is_file() for m in GENERATED_MARKERS):
                return True
    return False


def published_rows_apply(split_info: dict, generated: bool) -> bool:
    """Print DinoBloom's rows beside ours: real data holding most (> 50%) of their test cells."""
    return not generated and split_info["n_found"] > MOST_OF_SPLIT * split_info["n_listed"]


def build_dinobloom_tasks(
    cells: pd.DataFrame, min_cells: int
) -> tuple[list[Task], dict[str, dict], list[str]]:
    """One task per labelled source: ``(tasks, split info per BM-MLL task, notes)``."""
    is_lab = labelled(cells).to_numpy()
    source = cells["source"].astype(str).to_numpy()
    label = cells["label"].astype(str).to_numpy()
    bm = is_bm_mll(cells["source"])
    train_bm, test_bm, info = fixed_split(cells)
    tasks: list[Task] = []
    infos: dict[str, dict] = {}
    notes: list[str] = []
    for src in sorted(set(source[is_lab])):
        in_src = is_lab & (source == src)
        names, counts = np.unique(label[in_src], return_counts=True)
        keep = [str(n) for n, c in zip(names, counts, strict=True) if c >= min_cells]
        excluded = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < min_cells}
        code = {c: i for i, c in enumerate(keep)}
        codes = np.array([code.get(lab, -1) if ok else -1 for lab, ok in zip(label, in_src, strict=True)])
        if len(keep) < 2:
            notes.append(f"source {src}: fewer than 2 classes with >= {min_cells} labelled cells; not scored")
            continue
        if bm[in_src].all():
            tr = np.flatnonzero(train_bm & (codes >= 0))
            te = np.flatnonzero(test_bm & (codes >= 0))
            if not len(te):
                notes.append(
                    f"source {src}: none of DinoBloom's {info['n_listed']} test cells is present; not scored"
                )
                continue
            if not len(tr):
                notes.append(
                    f"source {src}: every labelled cell is in DinoBloom's test split; no training cells"
                )
                continue
            tasks.append(Task(src, "fixed split", src, src, keep, codes, [(tr, te)], excluded))
            infos[src] = info
        else:
            rows = np.flatnonzero(codes >= 0)
            folds = [(rows[a], rows[b]) for a, b in cv_folds(codes[rows])]
            tasks.append(Task(src, "5-fold", src, src, keep, codes, folds, excluded))
    return tasks, infos, notes


def _fmt(d: dict, signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{d['estimate']:{f}} [{d['low']:{f}}, {d['high']:{f}}]"


def _score(
    task: Task, preds: dict[str, dict[str, list]], main: str, n_boot: int, seed: int
) -> dict[str, Any]:
    ys = [task.labels[te] for _, te in task.folds]
    out: dict[str, Any] = {"metrics": {}, "vs_baselines": {}}
    for model, by_clf in preds.items():
        out["metrics"][model] = {
            clf: {k: v.as_dict() for k, v in fold_bootstrap(ys, p, None, n_boot, seed).items()}
            for clf, p in by_clf.items()
        }
        if model != main:
            out["vs_baselines"][model] = {
                clf: {
                    k: v.as_dict() for k, v in fold_bootstrap(ys, preds[main][clf], p, n_boot, seed).items()
                }
                for clf, p in by_clf.items()
            }
    return out


def _task_section(task: Task, tres: dict, main: str, published: bool) -> list[tuple[str, str]]:
    split = tres.get("split")
    if split:
        miss = ", ".join(f"{c} {n}" for c, n in split["missing_by_class"].items()) or "none"
        head = (
            f"DinoBloom's fixed test split: {split['n_found']} of its {split['n_listed']} listed cells are "
            f"present and form the test set; **{split['n_missing']} listed cells are not in the data** "
            f"(by class: {miss}). Train: the {split['n_train']} other labelled BM-MLL cells."
            + (
                f" {split['label_differs']} listed cells carry another label here than in the list."
                if split["label_differs"]
                else ""
            )
        )
    else:
        head = (
            "No published split for this source: DinoBloom's 5-fold protocol as their code runs it "
            "(scikit-learn `StratifiedKFold(n_splits=5)` without shuffling, cells in `cell_id` order), "
            f"metrics averaged over the folds; test cells per fold: {[len(te) for _, te in task.folds]}."
        )
    if task.excluded:
        head += (
            " Not scored (below --min-cells): "
            + ", ".join(f"{c} ({n})" for c, n in sorted(task.excluded.items()))
            + "."
        )
    rows = [
        {"model": m, "classifier": CLF_NAMES[c], **{METRIC_NAMES[k]: _fmt(v) for k, v in ms.items()}}
        for m, by in tres["metrics"].items()
        for c, ms in by.items()
    ]
    body = head + "\n\n" + markdown_table(rows, ["model", "classifier", *METRIC_NAMES.values()])
    if published:
        pub = [
            {
                "model": f"{r['model']} (published)",
                **{METRIC_NAMES[k]: f"{r[k]:.3f}" for k in ("accuracy", "balanced_accuracy", "f1_weighted")},
            }
            for r in PUBLISHED_ROWS
        ]
        body += (
            f"\n**Published (DinoBloom)**: {CITATION}.\n\n"
            + markdown_table(pub)
            + "\nSettings that differ: "
            + "; ".join(DIFFERING_SETTINGS)
            + "."
        )
    elif split:
        body += (
            f"\nDinoBloom's published rows are not shown: they need real BM-MLL data holding most of its "
            f"{split['n_listed']} test cells (here {split['n_found']}"
            + (", generated cells" if tres.get("generated") else "")
            + ")."
        )
    out = [(f"{task.name}: {task.kind} (estimate [95% CI])", body)]
    if tres["vs_baselines"]:
        table = baseline_table(tres["vs_baselines"], CLF_NAMES)
        out.append((f"{task.name}: {main} minus each baseline (paired bootstrap)", table))
    return out


@dataclass
class DinoBloomPredictions:
    """One model's predictions on one task: per classifier, one array per fold; the fits' info."""

    preds: dict[str, list]
    info: list[dict]


class DinoBloomProtocol(Protocol):
    """``probe --protocol dinobloom`` (see the module docstring)."""

    name = "dinobloom"
    classifiers: ClassVar[tuple[str, ...]] = CLASSIFIERS
    metrics: ClassVar[tuple[str, ...]] = tuple(METRIC_NAMES)
    default_min_cells: ClassVar[int] = 1
    knn_index: ClassVar[str] = "sklearn KNeighborsClassifier, exact Euclidean (DinoBloom's)"
    descriptions: ClassVar[dict[str, str]] = {
        "logreg": "LogisticRegression(solver='lbfgs', max_iter=1000, C=D*K/100), raw features",
        "knn1": "KNeighborsClassifier(n_neighbors=1), Euclidean, uniform",
        "knn20": "KNeighborsClassifier(n_neighbors=20), Euclidean, uniform",
    }

    def __init__(self) -> None:
        self._infos: dict[str, dict] = {}
        self._generated = False
        self._side: pd.Series | None = None

    def tasks(self, ctx: ProbeContext) -> list[Task]:
        tasks, self._infos, notes = build_dinobloom_tasks(ctx.cells, ctx.min_cells)
        ctx.notes += notes
        for name, info in self._infos.items():
            if info["n_missing"]:
                ctx.log(
                    f"{info['n_missing']} of DinoBloom's {info['n_listed']} listed test cells are not in the data ({name})"
                )
        if not tasks:
            raise ProbeError(
                f"nothing to score in {ctx.emb_dir}: " + ("; ".join(notes) or "no labelled cells")
            )
        self._generated = is_generated(ctx.cells, ctx.embed_meta)
        self._side = pd.Series("", index=range(len(ctx.cells)), dtype=object)
        ctx.split_note = "DinoBloom's fixed BM-MLL test split; their unshuffled stratified 5-fold elsewhere"
        return tasks

    def predict(self, x: np.ndarray, task: Task, ctx: ProbeContext) -> DinoBloomPredictions:
        out = DinoBloomPredictions({c: [] for c in CLASSIFIERS}, [])
        for tr, te in task.folds:
            p, info = fit_predict(x[tr], task.labels[tr], x[te])
            out.info.append(info)
            for c in CLASSIFIERS:
                out.preds[c].append(p[c])
        return out

    def score(self, task: Task, preds: dict[str, Any], ctx: ProbeContext, out_dir: Path) -> dict[str, Any]:
        tres = _score(task, {m: p.preds for m, p in preds.items()}, ctx.main_model, ctx.n_boot, ctx.seed)
        tres.update(
            {
                "kind": task.kind,
                "classes": task.classes,
                "excluded_classes": task.excluded,
                "n_test": int(sum(len(te) for _, te in task.folds)),
                "fit_info": {m: p.info for m, p in preds.items()},
                "generated": self._generated,
            }
        )
        assert self._side is not None
        if task.name in self._infos:
            tres["split"] = self._infos[task.name]
            tres["published_rows"] = (
                list(PUBLISHED_ROWS)
                if published_rows_apply(self._infos[task.name], self._generated)
                else None
            )
            self._side[task.folds[0][0]] = "train"
            self._side[task.folds[0][1]] = "test"
        else:
            for f, (_, te) in enumerate(task.folds):
                self._side[te] = f"fold {f}"
        return tres

    def sections(self, task: Task, tres: dict[str, Any], ctx: ProbeContext) -> list[tuple[str, str]]:
        return _task_section(task, tres, ctx.main_model, bool(tres.get("published_rows")))

    def header(self, ctx: ProbeContext) -> dict[str, Any]:
        return {"generated_data": self._generated, "classifiers": dict(self.descriptions)}

    def finish(self, ctx: ProbeContext, out_dir: Path) -> None:
        side = self._side if self._side is not None else pd.Series(dtype=object)
        pd.DataFrame({"cell_id": ctx.cells["cell_id"], "dinobloom": side}).loc[side != ""].to_csv(
            out_dir / "split_dinobloom.csv", index=False
        )

    def setup(self, result: dict[str, Any], ctx: ProbeContext) -> tuple[str, tuple[str, str]]:
        setup = (
            "- Protocol: DinoBloom's evaluation (Koch et al., MICCAI 2024; `dinov2/eval/general_fixed_split_patch_eval.py` "
            "of marrlab/DinoBloom at 6c5e86d): BM-MLL on their fixed published test split (matched by file name), other "
            "sources by their unshuffled stratified 5-fold, metrics averaged over folds. No minimum cells per class"
            + (f" (here --min-cells {ctx.min_cells})" if ctx.min_cells > 1 else "")
            + ".\n"
            "- Classifiers on the raw features (no scaling): " + "; ".join(self.descriptions.values()) + ".\n"
            f"- Intervals: percentile bootstrap over the test cells (per fold, then averaged), {ctx.n_boot} "
            f"replicates, seed {ctx.seed}.\n"
            "- Models: "
            + "; ".join(f"**{m}** = `{d}`" for m, d in ctx.models.items())
            + "."
            + ("\n- Notes: " + "; ".join(ctx.notes) + "." if ctx.notes else "")
        )
        return f"Probe of {ctx.main_model} by DinoBloom's protocol", ("Setup", setup)
