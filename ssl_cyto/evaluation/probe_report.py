"""Rendering of ``ssl-cyto probe`` results: the report's tables, the confusion-matrix PNG, the
Matek 2021 Table 1 reference and :func:`headline` (compact rows for summaries such as the demo).

The numbers are computed by :mod:`ssl_cyto.evaluation.probing`; this module only formats them. It
imports the probe's settings from :mod:`ssl_cyto.evaluation.protocol` and :class:`Task` from
:mod:`ssl_cyto.evaluation.splits`, never the orchestrator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssl_cyto.evaluation.metrics import confusion
from ssl_cyto.evaluation.protocol import C_GRID, FAST_C, TEMPERATURE
from ssl_cyto.evaluation.report import markdown_table
from ssl_cyto.evaluation.splits import Task, labelled

__all__ = [
    "CLF_NAMES",
    "MATEK_TABLE1",
    "METRIC_LABELS",
    "baseline_table",
    "confusion_png",
    "headline",
    "intro_section",
    "matek_reference",
    "task_sections",
    "verdict",
]

REFERENCES = Path(__file__).resolve().parent / "references"
MATEK_TABLE1 = REFERENCES / "matek2021_table1.csv"


def matek_reference() -> dict[str, dict]:
    """Matek et al. 2021 (Blood 138:1917) Table 1 rows by class code; empty when the file is missing."""
    if not MATEK_TABLE1.exists():
        return {}
    ref = pd.read_csv(MATEK_TABLE1)
    return {str(r["label"]): r.to_dict() for _, r in ref.iterrows()}


def confusion_png(y_true, y_pred, classes: list[str], path: Path, title: str) -> Path:
    """Write the row-normalised confusion matrix (counts in the cells) as a PNG; returns ``path``."""
    cm = confusion(y_true, y_pred, len(classes))
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    k = len(classes)
    size = max(4.0, 0.5 * k + 2.5)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(
        range(k), [f"{c} (n={int(n)})" for c, n in zip(classes, rows[:, 0], strict=True)], fontsize=8
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("expert label")
    fs = 8 if k <= 12 else 6
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=fs,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row (recall)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _fmt_ci(d: dict) -> str:
    return f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def headline(result: dict, task: str | None = None) -> list[dict[str, str]]:
    """Compact rows (one per model) of a :func:`probe` result, for summaries such as the demo report.

    Args:
        result: the dict returned by :func:`probe` (or ``probe.json`` loaded).
        task: task name (default: the first task, i.e. the first labelled source).

    Returns:
        Rows with ``model``, ``linear acc.``, ``linear bal. acc.``, ``kNN-20 acc.``, ``kNN-20 bal. acc.``
        ("estimate [low, high]"), ``mAP@5``, and for baselines ``vs <model> (linear bal. acc.)`` = the
        paired difference of the evaluated model minus that baseline with its verdict.
    """
    tasks = result.get("tasks") or {}
    if not tasks:
        return []
    name = task or next(iter(tasks))
    t = tasks[name]
    main_name = result.get("main_model")
    rows = []
    for model, by_clf in t["metrics"].items():
        row = {"task": name, "model": model}
        for clf, label in (("linear", "linear"), ("knn20", "kNN-20")):
            row[f"{label} acc."] = _fmt_ci(by_clf[clf]["accuracy"])
            row[f"{label} bal. acc."] = _fmt_ci(by_clf[clf]["balanced_accuracy"])
        row["mAP@5"] = f"{t['retrieval'][model]['mAP@5']:.3f}"
        diff = (t.get("vs_baselines") or {}).get(model)
        if diff:
            v = diff["linear"]["balanced_accuracy"]
            verdict = "beats" if v["low"] > 0 else ("worse" if v["high"] < 0 else "n.s.")
            row[f"{main_name} minus this (linear bal. acc.)"] = (
                f"{v['estimate']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] {verdict}"
            )
        rows.append(row)
    return rows


def intro_section(result: dict, cells: pd.DataFrame) -> tuple[str, str]:
    """The "Setup" section: protocol, split, classifiers, intervals, models, labelled cells per class."""
    proto = {
        "holdout20": "seeded stratified 80/20 hold-out (this project's; not DinoBloom's fixed split, see `--protocol dinobloom`), strata = (source, label)",
        "cv5": "stratified 5-fold cross-validation (Matek et al. 2021), out-of-fold predictions pooled",
    }.get(result["protocol"], result["protocol"])
    lines = [
        f"- Protocol: {proto}; seed {result['seed']}; {result['split']}.",
        (
            "- Split grouped by patient (the `patient` column)."
            if result["grouped_by_patient"]
            else "- **Not grouped by patient**: the cells carry no `patient` column (none of the sources gives "
            "patients now), so cells of one patient can be in both training and test; scores may be optimistic "
            "compared with a patient-level split."
        ),
        f"- Classes with fewer than {result['min_cells']} labelled cells are not scored (listed per task).",
        "- Linear probe: StandardScaler fit on the training cells only, L-BFGS multinomial logistic regression; "
        + (
            f"`--fast`: C = {FAST_C}, no sweep."
            if result["fast"]
            else f"C from {list(C_GRID)} by balanced accuracy on a stratified 20% validation part of the training cells, then refit."
        ),
        f"- kNN and retrieval: cosine similarity on the embeddings z-scored with the training cells' statistics "
        f"(as for the probe; the colour histogram is defined z-scored), k = 1 and k = 20, votes weighted by "
        f"exp(sim / {TEMPERATURE}).",
        f"- Intervals: percentile bootstrap over the test cells, {result['n_boot']} replicates, seed {result['seed']}; "
        "every model is scored on the same resamples. A model **beats** a baseline when the paired-bootstrap 95% "
        "interval of the difference lies above 0.",
        "- Models: " + "; ".join(f"**{m}** = `{d}`" for m, d in result["models"].items()) + ".",
    ]
    if result["notes"]:
        lines.append("- Notes: " + "; ".join(result["notes"]) + ".")
    if not result["fast"]:
        lines.append(
            "- Label efficiency: 1%, 10% and 100% of the training labels (stratified, >= 1 per class, seeded)."
        )
    else:
        lines.append("- Label efficiency skipped (`--fast`).")
    counts = (
        cells.loc[labelled(cells)]
        .groupby(["source", "label"])
        .size()
        .reset_index(name="cells")
        .to_dict("records")
    )
    body = (
        "\n".join(lines)
        + "\n\n**Labelled cells per source and class**\n\n"
        + markdown_table(counts, ["source", "label", "cells"])
    )
    return "Setup", body


CLF_NAMES = {"linear": "linear probe", "knn1": "kNN k=1", "knn20": "kNN k=20"}
METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "f1_macro": "macro F1",
    "f1_weighted": "weighted F1",
}
"""Column names of the metrics in every report table (``holdout20``, ``cv5`` and ``dinobloom``)."""


def verdict(ci: dict) -> str:
    """``beats`` / ``worse`` / ``n.s.`` for a paired-difference interval."""
    return "beats" if ci["low"] > 0 else ("worse" if ci["high"] < 0 else "n.s.")


def baseline_table(vs_baselines: dict, clf_names: dict[str, str]) -> str:
    """The one "model minus each baseline" table: paired differences with their verdict."""
    rows = []
    for base, by_clf in vs_baselines.items():
        for clf, ms in by_clf.items():
            row = {"baseline": base, "classifier": clf_names.get(clf, clf)}
            for k, v in ms.items():
                row[METRIC_LABELS[k]] = (
                    f"{v['estimate']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] {verdict(v)}"
                )
            rows.append(row)
    return markdown_table(rows)


def _classification(task: Task, tres: dict) -> tuple[str, str]:
    head = [
        f"Train: {task.source_train}; test: {task.source_test}; {len(task.classes)} classes; "
        f"{tres['n_test']} test cells; training cells per fold: {tres['n_train_per_fold']}.",
    ]
    if task.excluded:
        head.append(
            "Not scored (fewer cells than the minimum): "
            + ", ".join(f"{c} ({n})" for c, n in sorted(task.excluded.items()))
            + "."
        )
    rows = [
        {
            "model": model,
            "classifier": CLF_NAMES[clf],
            **{METRIC_LABELS[k]: _fmt_ci(v) for k, v in ms.items()},
        }
        for model, by_clf in tres["metrics"].items()
        for clf, ms in by_clf.items()
    ]
    body = "\n\n".join(head) + "\n\n" + markdown_table(rows, ["model", "classifier", *METRIC_LABELS.values()])
    return f"{task.name}: classification (estimate [95% CI])", body


def _retrieval(task: Task, tres: dict, main_name: str) -> tuple[str, str]:
    formula = ""
    rrows = []
    for model, r in tres["retrieval"].items():
        formula = r.get("formula", formula)
        rrows.append(
            {
                "model": model,
                "precision@1": r["precision@1"],
                "mAP@5": r["mAP@5"],
                "mAP@10": r["mAP@10"],
                "queries": r["n_queries"],
            }
        )
    prow = [
        {
            "class": c,
            "precision@1": v["precision@1"],
            "mAP@5": v["mAP@5"],
            "mAP@10": v["mAP@10"],
            "queries": v["n_queries"],
        }
        for c, v in tres["retrieval"][main_name]["per_class"].items()
    ]
    return (
        f"{task.name}: retrieval (database = training cells, queries = test cells, cosine)",
        markdown_table(rrows)
        + f"\nFormula: {formula}.\n\nPer class, {main_name}:\n\n"
        + markdown_table(prow),
    )


def _per_class(task: Task, tres: dict, main_name: str, protocol: str, reference: dict) -> tuple[str, str]:
    bm = task.kind == "source" and task.source_test == "bm-mll"
    prow = []
    for row in tres["per_class"][main_name]:
        r = {
            "class": row["class"],
            "precision": row["precision"],
            "recall": row["recall"],
            "F1": row["f1"],
            "support": row["support"],
        }
        if bm:
            ref = reference.get(row["class"], {})
            r["Matek 2021 precision (strict)"] = _ref_fmt(ref, "precision_strict")
            r["Matek 2021 recall (strict)"] = _ref_fmt(ref, "recall_strict")
        prow.append(r)
    text = f"Linear probe of {main_name}, pooled test predictions.\n\n" + markdown_table(prow)
    if bm:
        text += (
            "\nMatek 2021 columns: Blood 138:1917, Table 1 (supervised ResNeXt-50 trained end to end, 5-fold CV, "
            "mean ± SD over folds; see `ssl_cyto/evaluation/references/`). Not like-for-like: a linear probe on "
            "frozen features versus a fully fine-tuned network"
            + ("" if protocol == "cv5" else ", and another split")
            + "."
        )
        if not reference:
            text += " The reference file is missing: the published figures must be added from the paper."
    return f"{task.name}: per-class precision / recall / F1", text


def _efficiency(task: Task, tres: dict) -> tuple[str, str]:
    rows = [
        {
            "model": model,
            "labels": f"{float(frac):.0%}",
            "classifier": CLF_NAMES[clf],
            "accuracy": _fmt_ci(ms["accuracy"]),
            "balanced acc.": _fmt_ci(ms["balanced_accuracy"]),
        }
        for model, by_frac in tres["label_efficiency"].items()
        for frac in sorted(by_frac, key=float)
        for clf, ms in by_frac[frac].items()
    ]
    return f"{task.name}: label efficiency", markdown_table(rows)


def _reannotation(task: Task, agree: dict) -> tuple[str, str]:
    rows = [
        {"who": f"rater: {k}", "accuracy": _fmt_ci(v["accuracy"]), "Cohen's kappa": v["kappa"]}
        for k, v in agree["raters"].items()
    ]
    rows += [
        {"who": f"{model} (linear) {k}", "accuracy": _fmt_ci(v["accuracy"]), "Cohen's kappa": v["kappa"]}
        for model, d in agree["models"].items()
        for k, v in d.items()
    ]
    return (
        f"{task.name}: re-annotated test cells ({agree['n_cells']} cells)",
        "Agreement on the test cells that carry both re-annotations (`UNC`, unassignable, counts as a class "
        "of its own); the raters' rows are the human ceiling on the same cells (Cohen's kappa from "
        "scikit-learn; the model is scored on its own classes, so a rater's `UNC` or a class "
        "below the minimum is always a miss for it).\n\n" + markdown_table(rows),
    )


def task_sections(
    task: Task, tres: dict, main_name: str, protocol: str, reference: dict, png: str
) -> list[tuple[str, str]]:
    """The report sections of one task: metrics, paired differences, retrieval, per class, ... ."""
    out = [_classification(task, tres)]
    if tres["vs_baselines"]:
        out.append(
            (
                f"{task.name}: {main_name} minus each baseline (paired bootstrap)",
                "Difference of the metric, same resampled test cells for both models. *beats*: interval above 0; "
                "*worse*: below 0; *n.s.*: contains 0.\n\n" + baseline_table(tres["vs_baselines"], CLF_NAMES),
            )
        )
    out.append(_retrieval(task, tres, main_name))
    out.append(_per_class(task, tres, main_name, protocol, reference))
    if tres["label_efficiency"]:
        out.append(_efficiency(task, tres))
    if tres.get("reannotation"):
        out.append(_reannotation(task, tres["reannotation"]))
    out.append((f"{task.name}: confusion matrix", f"![confusion matrix]({png})"))
    return out


def _ref_fmt(ref: dict, key: str) -> str:
    v = ref.get(key)
    if v is None or v != v:
        return ""
    sd = ref.get(f"{key}_sd")
    return f"{float(v):.2f} ± {float(sd):.2f}" if sd is not None and sd == sd else f"{float(v):.2f}"
