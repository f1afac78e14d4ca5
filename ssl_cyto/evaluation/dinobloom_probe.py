"""``probe --protocol dinobloom``: DinoBloom's evaluation (:mod:`~ssl_cyto.evaluation.dinobloom`) run and reported.

Tasks: one per labelled source, the fixed published split for BM-MLL and their unshuffled
stratified 5-fold for the others; no cross-dataset tasks (DinoBloom has none). Every model (the
evaluated one and the baselines, :func:`ssl_cyto.evaluation.baselines.models_under_test`) gets the
same three classifiers; differences to each baseline are paired-bootstrap intervals. Writes
``report.md``, ``probe.json`` and ``split_dinobloom.csv`` (each cell's side, or its fold) into the
output folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.evaluation.baselines import models_under_test
from ssl_cyto.evaluation.dedup import folds_leakage, leakage_warning
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
from ssl_cyto.evaluation.image_hash import ImageHash
from ssl_cyto.evaluation.protocol import ProbeError
from ssl_cyto.evaluation.report import markdown_table, write_report
from ssl_cyto.evaluation.splits import Task, labelled
from ssl_cyto.formats.progress import Stages

__all__ = [
    "GENERATED_MARKERS",
    "build_dinobloom_tasks",
    "is_generated",
    "probe_dinobloom",
    "published_rows_apply",
]

CLF_NAMES = {"logreg": "logistic regression", "knn1": "kNN k=1", "knn20": "kNN k=20"}
METRIC_NAMES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "f1_weighted": "weighted F1",
    "f1_macro": "macro F1",
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
        rows = []
        for base, by in tres["vs_baselines"].items():
            for c, ms in by.items():
                row = {"baseline": base, "classifier": CLF_NAMES[c]}
                for k, v in ms.items():
                    verdict = "beats" if v["low"] > 0 else ("worse" if v["high"] < 0 else "n.s.")
                    row[METRIC_NAMES[k]] = f"{_fmt(v, True)} {verdict}"
                rows.append(row)
        out.append((f"{task.name}: {main} minus each baseline (paired bootstrap)", markdown_table(rows)))
    return out


def probe_dinobloom(
    emb_dir: Path,
    feats: np.ndarray,
    cells: pd.DataFrame,
    model_meta: dict,
    embed_meta: dict,
    *,
    baselines: str,
    baseline_dirs: dict[str, str | Path] | None,
    seed: int,
    n_boot: int,
    min_cells: int,
    out_dir: Path,
    command: str | Sequence[str] | None,
    stages: Stages,
    near_duplicates: bool = True,
) -> dict:
    """Run ``probe --protocol dinobloom`` (see the module docstring); returns ``probe.json``'s content."""
    tasks, infos, notes = build_dinobloom_tasks(cells, min_cells)
    for name, info in infos.items():
        if info["n_missing"]:
            stages(
                f"{info['n_missing']} of DinoBloom's {info['n_listed']} listed test cells are not in the data ({name})"
            )
    if not tasks:
        raise ProbeError(f"nothing to score in {emb_dir}: " + ("; ".join(notes) or "no labelled cells"))
    main, models, model_dirs = models_under_test(
        emb_dir, feats, cells, model_meta, embed_meta, baselines, baseline_dirs, seed, notes
    )
    generated = is_generated(cells, embed_meta)
    result: dict[str, Any] = {
        "emb_dir": str(emb_dir),
        "protocol": "dinobloom",
        "seed": seed,
        "n_boot": n_boot,
        "min_cells": min_cells,
        "models": model_dirs,
        "main_model": main,
        "n_cells": len(cells),
        "n_labelled": int(labelled(cells).sum()),
        "generated_data": generated,
        "notes": notes,
        "tasks": {},
        "classifiers": {
            "logreg": "LogisticRegression(solver='lbfgs', max_iter=1000, C=D*K/100), raw features",
            "knn1": "KNeighborsClassifier(n_neighbors=1), Euclidean, uniform",
            "knn20": "KNeighborsClassifier(n_neighbors=20), Euclidean, uniform",
        },
    }
    sections: list[tuple[str, str]] = []
    hashes: dict[int, ImageHash | None] = {}
    side = pd.Series("", index=range(len(cells)), dtype=object)
    for task in tasks:
        preds: dict[str, dict[str, list]] = {}
        infos_run: dict[str, list] = {}
        for model, x in models.items():
            stages(f"{task.name}: logistic regression and kNN of {model} ({len(task.folds)} fold(s))")
            preds[model] = {c: [] for c in CLASSIFIERS}
            for tr, te in task.folds:
                p, info = fit_predict(x[tr], task.labels[tr], x[te])
                infos_run.setdefault(model, []).append(info)
                for c in CLASSIFIERS:
                    preds[model][c].append(p[c])
        tres = _score(task, preds, main, n_boot, seed)
        tres.update(
            {
                "kind": task.kind,
                "classes": task.classes,
                "excluded_classes": task.excluded,
                "n_test": int(sum(len(te) for _, te in task.folds)),
                "fit_info": infos_run,
                "generated": generated,
            }
        )
        if task.name in infos:
            tres["split"] = infos[task.name]
            tres["published_rows"] = (
                list(PUBLISHED_ROWS) if published_rows_apply(infos[task.name], generated) else None
            )
            side[task.folds[0][0]] = "train"
            side[task.folds[0][1]] = "test"
        else:
            for f, (_, te) in enumerate(task.folds):
                side[te] = f"fold {f}"
        if near_duplicates:
            stages(f"{task.name}: near-duplicates of test cells among training cells")
            tres["near_duplicates"] = folds_leakage(feats, cells, task.folds, hashes)
            warning = leakage_warning(task.name, tres["near_duplicates"])
            if warning:
                stages(warning)
        result["tasks"][task.name] = tres
        sections += _task_section(task, tres, main, bool(tres.get("published_rows")))
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"cell_id": cells["cell_id"], "dinobloom": side}).loc[side != ""].to_csv(
        out_dir / "split_dinobloom.csv", index=False
    )
    result["seconds"] = round(stages.elapsed, 1)
    (out_dir / "probe.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    setup = (
        "- Protocol: DinoBloom's evaluation (Koch et al., MICCAI 2024; `dinov2/eval/general_fixed_split_patch_eval.py` "
        "of marrlab/DinoBloom at 6c5e86d): BM-MLL on their fixed published test split (matched by file name), other "
        "sources by their unshuffled stratified 5-fold, metrics averaged over folds. No minimum cells per class"
        + (f" (here --min-cells {min_cells})" if min_cells > 1 else "")
        + ".\n"
        "- Classifiers on the raw features (no scaling): " + "; ".join(result["classifiers"].values()) + ".\n"
        f"- Intervals: percentile bootstrap over the test cells (per fold, then averaged), {n_boot} replicates, seed {seed}.\n"
        "- Models: "
        + "; ".join(f"**{m}** = `{d}`" for m, d in model_dirs.items())
        + "."
        + ("\n- Notes: " + "; ".join(notes) + "." if notes else "")
    )
    report = write_report(
        out_dir / "report.md",
        title=f"Probe of {main} by DinoBloom's protocol",
        command=command,
        data=f"{emb_dir} — {len(cells)} cells ({result['n_labelled']} labelled)",
        sections=[("Setup", setup), *sections],
    )
    result["report"] = str(report)
    stages(f"wrote {report}")
    return result
