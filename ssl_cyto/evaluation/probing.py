"""``probe()``: frozen-feature evaluation of an embedding folder against expert labels, beside baselines.

Given an embedding folder (written by :func:`ssl_cyto.embedding.runner.embed`), :func:`probe`

1. reads it (:func:`ssl_cyto.evaluation.splits.load_embeddings`), makes or reuses the seeded split and
   builds the tasks (:mod:`ssl_cyto.evaluation.splits`);
2. gets the baselines' features of the same cells (:mod:`ssl_cyto.evaluation.baselines`);
3. runs the linear probe, kNN and retrieval on every fold of every task for every model
   (:mod:`ssl_cyto.evaluation.classifiers`);
4. scores them: accuracy, balanced accuracy, macro and weighted F1 with percentile-bootstrap 95%
   intervals over resampled test cells (:mod:`ssl_cyto.evaluation.bootstrap`); per-class precision,
   recall and F1 (beside Matek 2021 Table 1 for BM-MLL); retrieval with the training cells as
   database and the test cells as queries (:func:`ssl_cyto.retrieval.metrics.retrieval_metrics`);
   label efficiency; the re-annotated cells (:mod:`ssl_cyto.evaluation.rater_agreement`). "Beats"
   means the paired-bootstrap 95% interval of the difference (same resampled test cells for both)
   lies above 0;
5. writes ``report.md`` (:mod:`ssl_cyto.evaluation.probe_report`), confusion PNGs and ``probe.json``
   into ``--out`` (default ``EMB_DIR/probe/``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.data.vocabulary import MIN_CELLS_TO_SCORE
from ssl_cyto.evaluation.baselines import models_under_test
from ssl_cyto.evaluation.bootstrap import bootstrap_indices, bootstrap_metrics, paired_bootstrap_metrics
from ssl_cyto.evaluation.classifiers import FoldPredictions, run_classifiers
from ssl_cyto.evaluation.dedup import folds_leakage, leakage_warning
from ssl_cyto.evaluation.dinobloom_probe import probe_dinobloom
from ssl_cyto.evaluation.image_hash import ImageHash
from ssl_cyto.evaluation.metrics import per_class_report
from ssl_cyto.evaluation.probe_report import (
    confusion_png,
    headline,
    intro_section,
    matek_reference,
    task_sections,
)
from ssl_cyto.evaluation.protocol import CLASSIFIERS, LABEL_FRACTIONS, PROTOCOLS, ProbeError
from ssl_cyto.evaluation.rater_agreement import reannotation_agreement
from ssl_cyto.evaluation.report import write_report
from ssl_cyto.evaluation.splits import (
    Task,
    build_tasks,
    has_value,
    labelled,
    load_embeddings,
    load_or_make_split,
)
from ssl_cyto.formats.outputs import check_output_dir
from ssl_cyto.formats.progress import Stages
from ssl_cyto.retrieval.metrics import retrieval_metrics

__all__ = ["PROTOCOLS", "ProbeError", "headline", "probe"]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_").lower()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def _score_task(
    task: Task,
    fold_preds: dict[str, FoldPredictions],
    main_name: str,
    cells: pd.DataFrame,
    n_boot: int,
    seed: int,
    with_efficiency: bool,
) -> dict[str, Any]:
    """Every number of one task (the ``tasks.<name>`` entry of ``probe.json``)."""
    y = fold_preds[main_name].y_true
    idx = bootstrap_indices(len(y), n_boot, seed)
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
        for frac, by_clf in fp.efficiency.items():
            tres["label_efficiency"].setdefault(name, {})[frac] = {
                clf: {
                    k: v.as_dict()
                    for k, v in bootstrap_metrics(y, p, idx, ("accuracy", "balanced_accuracy")).items()
                }
                for clf, p in by_clf.items()
            }
        if with_efficiency:
            tres["label_efficiency"].setdefault(name, {})["1.0"] = {
                clf: {k: tres["metrics"][name][clf][k] for k in ("accuracy", "balanced_accuracy")}
                for clf in ("linear", "knn20")
            }
    main = fold_preds[main_name]
    for name, fp in fold_preds.items():
        if name == main_name:
            continue
        tres["vs_baselines"][name] = {
            clf: {
                k: v.as_dict()
                for k, v in paired_bootstrap_metrics(y, main.preds[clf], fp.preds[clf], idx).items()
            }
            for clf in CLASSIFIERS
        }
    if task.kind == "source" and "reannot1" in cells.columns:
        linear = {m: fp.preds["linear"] for m, fp in fold_preds.items()}
        agree = reannotation_agreement(cells, task, task.test_rows, linear, n_boot, seed)
        if agree:
            tres["reannotation"] = agree
    return tres


def probe(
    emb_dir: str | Path,
    protocol: str = "holdout20",
    fast: bool = False,
    baselines: str = "auto",
    baseline_dirs: dict[str, str | Path] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    min_cells: int | None = None,
    n_boot: int | None = None,
    command: str | Sequence[str] | None = None,
    near_duplicates: bool = True,
) -> dict:
    """Evaluate an embedding folder against the expert labels; write report.md, PNGs and probe.json.

    Args:
        emb_dir: folder written by ``ssl-cyto embed``.
        protocol: ``holdout20`` (seeded stratified 80/20), ``cv5`` (stratified 5-fold, pooled
            predictions) or ``dinobloom`` (DinoBloom's published evaluation:
            :mod:`ssl_cyto.evaluation.dinobloom_probe`).
        fast: fixed C (no sweep), 200 bootstrap replicates, no label-efficiency runs.
        baselines: ``auto`` (embed and evaluate the random-weights and colour-histogram baselines, or
            reuse them from ``EMB_DIR/baselines/``) or ``none``.
        baseline_dirs: extra or overriding baselines, name -> embedding folder of the same cells.
        seed: seed of the split, the probe's validation part, the subsampling and the bootstrap.
        out: output folder (default ``EMB_DIR/probe``).
        min_cells: classes with fewer labelled cells are not scored (default 50,
            :data:`ssl_cyto.data.vocabulary.MIN_CELLS_TO_SCORE`; ``dinobloom``: 1, no minimum).
        n_boot: bootstrap replicates (default 1000, ``fast``: 200).
        command: the command line to put at the top of the report (default: this process's argv).
        near_duplicates: check the test cells of every task for near-duplicates among its training cells
            on the images (:func:`ssl_cyto.evaluation.dedup.folds_leakage`; costs about 0.03 s per
            image hashed) and warn with the count.

    Returns:
        The content of ``probe.json`` (every number in the report), with ``"report"`` = its path.

    Raises:
        ProbeError: bad options, an unreadable embedding folder or baseline, nothing to score.
    """
    stages = Stages("probe")
    if protocol not in PROTOCOLS:
        raise ProbeError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if baselines not in ("auto", "none"):
        raise ProbeError(f"--baselines must be 'auto' or 'none', got {baselines!r}")
    emb_dir = Path(emb_dir)
    out_dir = check_output_dir(Path(out) if out else emb_dir / "probe", "--out")
    n_boot = n_boot or (200 if fast else 1000)
    default_min = 1 if protocol == "dinobloom" else int(MIN_CELLS_TO_SCORE)
    min_cells = default_min if min_cells is None else int(min_cells)

    feats, cells, model_meta, embed_meta = load_embeddings(emb_dir)
    stages(f"read {len(cells)} cells ({int(labelled(cells).sum())} labelled) from {emb_dir}")
    if protocol == "dinobloom":
        return probe_dinobloom(
            emb_dir,
            feats,
            cells,
            model_meta,
            embed_meta,
            baselines=baselines,
            baseline_dirs=baseline_dirs,
            seed=seed,
            n_boot=n_boot,
            min_cells=min_cells,
            out_dir=out_dir,
            command=command,
            stages=stages,
            near_duplicates=near_duplicates,
        )
    split, split_note = load_or_make_split(emb_dir, cells, protocol, seed)
    tasks, notes = build_tasks(cells, split, protocol, min_cells)
    if not tasks:
        raise ProbeError(
            f"nothing to score in {emb_dir}: "
            + ("; ".join(notes) or f"no labelled classes with >= {min_cells} cells")
            + f"; lower the minimum with --min-cells N (now {min_cells})"
        )
    skipped = sorted({f"{c} ({n})" for t in tasks if t.kind == "source" for c, n in t.excluded.items()})
    if skipped:
        stages(
            f"not scored, fewer than {min_cells} labelled cells: {', '.join(skipped)}; "
            "change the minimum with --min-cells N"
        )
    stages(f"{len(tasks)} task(s); {split_note}")
    main_name, models, model_dirs = models_under_test(
        emb_dir, feats, cells, model_meta, embed_meta, baselines, baseline_dirs, seed, notes
    )
    stages(f"features of {len(models)} model(s): " + ", ".join(models))

    fractions = () if fast else LABEL_FRACTIONS
    result: dict[str, Any] = {
        "emb_dir": str(emb_dir),
        "protocol": protocol,
        "seed": seed,
        "fast": fast,
        "n_boot": n_boot,
        "min_cells": min_cells,
        "models": model_dirs,
        "main_model": main_name,
        "model_meta": {
            k: model_meta.get(k)
            for k in ("architecture", "method", "embed_dim", "input_size", "weights_sha256")
        },
        "split": split_note,
        "grouped_by_patient": bool("patient" in cells.columns and has_value(cells["patient"]).any()),
        "n_cells": len(cells),
        "n_labelled": int(labelled(cells).sum()),
        "notes": notes,
        "tasks": {},
    }
    reference = matek_reference()
    sections: list[tuple[str, str]] = []
    hashes: dict[int, ImageHash | None] = {}
    out_dir.mkdir(parents=True, exist_ok=True)

    for ti, task in enumerate(tasks):
        fold_preds = {}
        for name, x in models.items():
            stages(
                f"task {ti + 1}/{len(tasks)} {task.name} ({len(task.classes)} classes): classifiers of {name}"
            )
            fold_preds[name] = run_classifiers(x, task, fast, seed, fractions)
        tres = _score_task(task, fold_preds, main_name, cells, n_boot, seed, bool(fractions))
        png = out_dir / f"confusion_{_slug(task.name)}.png"
        main = fold_preds[main_name]
        confusion_png(
            main.y_true, main.preds["linear"], task.classes, png, f"{main_name}, linear probe: {task.name}"
        )
        tres["confusion_png"] = png.name
        if near_duplicates:
            stages(
                f"task {ti + 1}/{len(tasks)} {task.name}: near-duplicates of test cells among training cells"
            )
            tres["near_duplicates"] = folds_leakage(feats, cells, task.folds, hashes)
            warning = leakage_warning(task.name, tres["near_duplicates"])
            if warning:
                stages(warning)
        result["tasks"][task.name] = tres
        sections += task_sections(task, tres, main_name, protocol, reference, png.name)

    result["seconds"] = round(stages.elapsed, 1)
    (out_dir / "probe.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    data_desc = (
        f"{emb_dir} — {len(cells)} cells ({result['n_labelled']} labelled) from "
        + ", ".join(f"{s} ({n})" for s, n in cells["source"].astype(str).value_counts().sort_index().items())
        + (f"; embedded from {embed_meta.get('data')}" if embed_meta.get("data") else "")
    )
    report = write_report(
        out_dir / "report.md",
        title=f"Probe of {main_name} against expert labels ({protocol})",
        command=command,
        data=data_desc,
        sections=[intro_section(result, cells), *sections],
        figures=None,
    )
    result["report"] = str(report)
    stages(f"wrote {report}")
    return result
