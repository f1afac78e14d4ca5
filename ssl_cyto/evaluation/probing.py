"""``probe()``: frozen-feature evaluation of an embedding folder against expert labels, beside baselines.

The one runner of every protocol (:class:`~ssl_cyto.evaluation.protocol.Protocol`; built in:
``holdout20`` and ``cv5``, :mod:`~ssl_cyto.evaluation.holdout`; ``dinobloom``,
:mod:`~ssl_cyto.evaluation.dinobloom_probe`). Given an embedding folder (written by
:func:`ssl_cyto.embedding.runner.embed`), :func:`probe`

1. reads it (:func:`ssl_cyto.evaluation.splits.load_embeddings`) and lets the protocol build its tasks;
2. gets the baselines' features of the same cells (:mod:`ssl_cyto.evaluation.baselines`; a baseline
   SPEC resolves to an embedding folder in :func:`~ssl_cyto.evaluation.baselines.resolve_baseline`);
3. for every task and model, lets the protocol fit and predict its classifiers, then score them;
4. checks each task's test cells for near-duplicates among its training cells, on the stored image
   hashes (:func:`ssl_cyto.evaluation.dedup.folds_leakage`);
5. writes ``probe.json`` (:func:`ssl_cyto.formats.probe_json.write_probe_json`) and ``report.md`` into
   ``--out`` (default ``EMB_DIR/probe/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssl_cyto.evaluation.baselines import models_under_test
from ssl_cyto.evaluation.dedup import folds_leakage, leakage_warning
from ssl_cyto.evaluation.dinobloom_probe import DinoBloomProtocol
from ssl_cyto.evaluation.holdout import CrossValidation, HoldOut
from ssl_cyto.evaluation.probe_report import headline
from ssl_cyto.evaluation.protocol import ProbeContext, ProbeError, Protocol
from ssl_cyto.evaluation.report import write_report
from ssl_cyto.evaluation.splits import Task, has_value, labelled, load_embeddings
from ssl_cyto.formats.outputs import check_output_dir
from ssl_cyto.formats.probe_json import write_probe_json
from ssl_cyto.formats.progress import Stages

__all__ = ["PROTOCOLS", "ProbeError", "get_protocol", "headline", "probe", "register_protocol"]

_REGISTRY: dict[str, type[Protocol]] = {p.name: p for p in (HoldOut, CrossValidation, DinoBloomProtocol)}
PROTOCOLS = tuple(_REGISTRY)
"""The protocols :func:`probe` knows at import time (``register_protocol`` adds more)."""


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Make ``cls`` (a :class:`Protocol` subclass with a new ``name``) available to :func:`probe`."""
    _REGISTRY[cls.name] = cls
    return cls


def get_protocol(name: str) -> Protocol:
    """A fresh instance of the protocol ``name``.

    Raises:
        ProbeError: no protocol of that name.
    """
    if name not in _REGISTRY:
        raise ProbeError(f"unknown protocol {name!r}; choose one of {tuple(_REGISTRY)}")
    return _REGISTRY[name]()


def _result_head(proto: Protocol, ctx: ProbeContext, protocol: str) -> dict[str, Any]:
    cells = ctx.cells
    return {
        "emb_dir": str(ctx.emb_dir),
        "protocol": protocol,
        "seed": ctx.seed,
        "fast": ctx.fast,
        "n_boot": ctx.n_boot,
        "min_cells": ctx.min_cells,
        "models": ctx.models,
        "main_model": ctx.main_model,
        "model_meta": {
            k: ctx.model_meta.get(k)
            for k in ("architecture", "method", "embed_dim", "input_size", "weights_sha256")
        },
        "split": ctx.split_note,
        "grouped_by_patient": bool("patient" in cells.columns and has_value(cells["patient"]).any()),
        "n_cells": len(cells),
        "n_labelled": int(labelled(cells).sum()),
        "notes": ctx.notes,
        "metrics": list(proto.metrics),
        "knn_index": proto.knn_index,
        **proto.header(ctx),
        "tasks": {},
    }


def _run_task(
    proto: Protocol,
    task: Task,
    models: dict,
    ctx: ProbeContext,
    out_dir: Path,
    near_duplicates: bool,
    label: str,
) -> dict[str, Any]:
    """Fit, predict and score one task for every model; add the near-duplicate check."""
    preds = {}
    for name, x in models.items():
        ctx.log(f"{label} ({len(task.classes)} classes, {len(task.folds)} fold(s)): classifiers of {name}")
        preds[name] = proto.predict(x, task, ctx)
    tres = proto.score(task, preds, ctx, out_dir)
    if near_duplicates:
        ctx.log(f"{label}: near-duplicates of test cells among training cells")
        tres["near_duplicates"] = folds_leakage(ctx.feats, ctx.cells, task.folds, ctx.emb_dir, ctx.embed_meta)
        warning = leakage_warning(task.name, tres["near_duplicates"])
        if warning:
            ctx.log(warning)
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
            predictions), ``dinobloom`` (DinoBloom's published evaluation) or a registered one.
        fast: fixed C (no sweep), 200 bootstrap replicates, no label-efficiency runs.
        baselines: ``auto`` (the random-weights and colour-histogram baselines, embedded in one pass
            over the images or reused from ``EMB_DIR/baselines/``) or ``none``.
        baseline_dirs: extra or overriding baselines, name -> embedding folder of the same cells.
        seed: seed of the split, the probe's validation part, the subsampling and the bootstrap.
        out: output folder (default ``EMB_DIR/probe``).
        min_cells: classes with fewer labelled cells are not scored (default: the protocol's, 50
            for ``holdout20``/``cv5`` and 1 for ``dinobloom``).
        n_boot: bootstrap replicates (default 1000, ``fast``: 200).
        command: the command line to put at the top of the report (default: this process's argv).
        near_duplicates: check the test cells of every task for near-duplicates among its training
            cells on the images' perceptual hashes (stored by pack; hashed once and kept in
            ``EMB_DIR/image_hashes.parquet`` when missing) and warn with the count.

    Returns:
        The content of ``probe.json`` (every number in the report), with ``"report"`` = its path.

    Raises:
        ProbeError: bad options, an unreadable embedding folder or baseline, nothing to score.
    """
    stages = Stages("probe")
    proto = get_protocol(protocol)
    if baselines not in ("auto", "none"):
        raise ProbeError(f"--baselines must be 'auto' or 'none', got {baselines!r}")
    emb_dir = Path(emb_dir)
    out_dir = check_output_dir(Path(out) if out else emb_dir / "probe", "--out")
    folder = load_embeddings(emb_dir)
    ctx = ProbeContext(
        emb_dir=emb_dir,
        feats=folder.vectors,
        cells=folder.cells,
        model_meta=folder.model,
        embed_meta=folder.embed,
        seed=seed,
        fast=fast,
        n_boot=n_boot or (200 if fast else 1000),
        min_cells=proto.default_min_cells if min_cells is None else int(min_cells),
        log=stages,
    )
    stages(f"read {len(ctx.cells)} cells ({int(labelled(ctx.cells).sum())} labelled) from {emb_dir}")
    tasks = proto.tasks(ctx)
    skipped = sorted({f"{c} ({n})" for t in tasks if t.kind == "source" for c, n in t.excluded.items()})
    if skipped:
        stages(
            f"not scored, fewer than {ctx.min_cells} labelled cells: {', '.join(skipped)}; "
            "change the minimum with `ssl-cyto probe --min-cells N`"
        )
    stages(f"{len(tasks)} task(s); {ctx.split_note}")
    ctx.main_model, models, ctx.models = models_under_test(folder, baselines, baseline_dirs, seed, ctx.notes)
    stages(f"features of {len(models)} model(s): " + ", ".join(models))
    result = _result_head(proto, ctx, protocol)
    sections: list[tuple[str, str]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for ti, task in enumerate(tasks):
        label = f"task {ti + 1}/{len(tasks)} {task.name}"
        tres = _run_task(proto, task, models, ctx, out_dir, near_duplicates, label)
        result["tasks"][task.name] = tres
        sections += proto.sections(task, tres, ctx)
    proto.finish(ctx, out_dir)
    result["seconds"] = round(stages.elapsed, 1)
    write_probe_json(out_dir, result)
    title, setup = proto.setup(result, ctx)
    cells = ctx.cells
    data_desc = (
        f"{emb_dir} — {len(cells)} cells ({result['n_labelled']} labelled) from "
        + ", ".join(f"{s} ({n})" for s, n in cells["source"].astype(str).value_counts().sort_index().items())
        + (f"; embedded from {ctx.embed_meta.get('data')}" if ctx.embed_meta.get("data") else "")
    )
    report = write_report(
        out_dir / "report.md", title=title, command=command, data=data_desc, sections=[setup, *sections]
    )
    result["report"] = str(report)
    stages(f"wrote {report}")
    return result
