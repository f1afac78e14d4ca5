"""``ssl-cyto demo``: the whole pipeline end to end, through the same functions as a full-scale run.

Stages (each one ``ssl-cyto`` subcommand's Python function)::

    cells (generated AML-LMU + BM-MLL layouts, or --data) -> scan -> pack -> fit -> export -> embed
    -> index build -> probe (fast) -> query gallery -> umap -> report.md

``--minutes`` caps the whole demo's wall time (:mod:`ssl_cyto.demo.budget`). Every cell of
``--data`` is embedded into ``OUT/emb/``. The methods and their recipes come from the method
registry (:mod:`ssl_cyto.tasks.registry`): a new method with a ``demo_<name>.yaml`` runs here too.
"""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from ssl_cyto.data.datamodule import CellDataModule
from ssl_cyto.data.packing import pack
from ssl_cyto.data.scanning import scan
from ssl_cyto.data.sources import detect_source
from ssl_cyto.data.synth import synthesize
from ssl_cyto.demo.budget import (
    estimate_post_training_seconds,
    forward_seconds_per_cell,
    max_time,
    pretrain_seconds,
)
from ssl_cyto.demo.demo_report import write_demo_report
from ssl_cyto.demo.learning_curve import plot_learning_curve
from ssl_cyto.demo.stages import DemoError, StageLog
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.probing import probe
from ssl_cyto.evaluation.umap_map import umap_map
from ssl_cyto.formats.catalog import write_catalog
from ssl_cyto.formats.embeddings import read_embedding_folder
from ssl_cyto.retrieval.index_io import build_index
from ssl_cyto.retrieval.search import query
from ssl_cyto.tasks.registry import demo_config, method_names
from ssl_cyto.training.export import export_checkpoint
from ssl_cyto.training.fit import run_fit
from ssl_cyto.training.fit_objects import SECTIONS

GENERATED_LAYOUTS = ("aml-lmu", "bm-mll")
GALLERY_QUERIES = 8
GALLERY_NEIGHBOURS = 6


def _cells(log: StageLog, out: Path, data: str | Path | None, per_class: int, seed: int) -> tuple[list, str]:
    """Stage 1: the source specs to scan and a sentence describing the data for the report."""
    if data is None:
        def _generate() -> list[tuple[str, str]]:
            return [
                (layout, str(synthesize(out / "data" / layout, layout=layout, per_class=per_class, seed=seed)))
                for layout in GENERATED_LAYOUTS
            ]

        specs = log.run("generate cells", _generate, f"{per_class}/class, AML-LMU TIFF + BM-MLL JPEG layouts")
        desc = (
            f"generated cells (`ssl-cyto data synth`, seed {seed}): AML-LMU layout (15 classes, RGBA TIFF) "
            f"and BM-MLL layout (21 classes, JPEG 250x250 in range folders), {per_class} cells per class each"
        )
        return specs, desc
    kind = detect_source(data)
    log.skip("generate cells", f"skipped: --data {data}")
    return [(kind, str(Path(data).resolve()))], f"`{data}` read as source kind `{kind}`"


def _gallery_picks(emb_dir: Path) -> list[str]:
    """One labelled cell per (source, class), at most ``GALLERY_QUERIES`` in all."""
    cells = read_embedding_folder(emb_dir).cells
    labelled = cells[cells["label"].notna()]
    picks = labelled.groupby(["source", "label"], sort=True).head(1)
    return picks.groupby("source").head(GALLERY_QUERIES)["cell_id"].tolist()[:GALLERY_QUERIES]


def _pretrain(config_path: Path, shard_dir: Path, workers: int, seed: int, root: Path, time_cap: str) -> str:
    """The demo's recipe (``demo_<method>.yaml``) trained through ``ssl_cyto.fit(task, data, ...)``."""
    cfg = yaml.safe_load(config_path.read_text())
    module_name, cls_name = cfg["model"]["class_path"].rsplit(".", 1)
    task = getattr(importlib.import_module(module_name), cls_name)(**cfg["model"].get("init_args", {}))
    data = CellDataModule(**{**cfg.get("data", {}), "data": str(shard_dir), "num_workers": workers, "seed": seed})
    sections = {k: v for k, v in cfg.items() if k in SECTIONS and v}
    trainer = {**cfg.get("trainer", {}), "default_root_dir": str(root), "max_time": time_cap}
    return run_fit(task, data, sections=sections, run=cfg.get("run"), seed=seed, **trainer)


def run_demo(
    out: str | Path = "demo_out",
    data: str | Path | None = None,
    method: str = "simclr",
    minutes: float = 10.0,
    per_class: int = 40,
    seed: int = 0,
    workers: int = 2,
    min_train_seconds: float = 30.0,
    min_cells: int = 10,
    command: str | None = None,
) -> Path:
    """Run the whole pipeline and write ``OUT/report.md``; returns its path.

    Args:
        out: output folder (created; a rerun reuses finished stages' artefacts where they are resumable).
        data: an image folder of any source layout; default: generated cells in both real layouts.
        method: a name of the method registry (``simclr``, ``dino``); its recipe is ``demo_<method>.yaml``.
        minutes: cap on the whole demo's wall time.
        per_class: generated cells per class and layout (when ``data`` is None).
        seed: seed for generation, packing, training and splits.
        workers: data-loading / packing worker processes.
        min_train_seconds: pretraining gets at least this long even when the estimate leaves less.
        min_cells: classes with fewer labelled cells are not scored (the demo's generated sets are small;
            the probe's own default is ``MIN_CELLS_TO_SCORE``).
        command: the command line to print in the report (default: ``ssl-cyto demo`` with these args).
    """
    if method not in method_names():
        raise DemoError(f"--method must be one of {', '.join(method_names())}, got {method!r}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = StageLog(total_stages=12)
    config_path = demo_config(method)
    model_args: dict[str, Any] = yaml.safe_load(config_path.read_text())["model"]["init_args"]
    input_size = int(model_args.get("input_size", 64))
    command = command or "ssl-cyto demo " + shlex.join(
        (["--data", str(data)] if data else []) + ["--method", method, "--minutes", f"{minutes:g}", "--out", str(out)]
    )

    specs, data_desc = _cells(log, out, data, per_class, seed)
    catalog_path = out / "catalog.parquet"
    catalog = log.run("scan", lambda: scan(specs), " + ".join(k for k, _ in specs))
    write_catalog(catalog, catalog_path)
    n_cells = len(catalog)

    # re-encoded at a small size: the demo trains at input_size px
    shard_dir = out / "shards"
    pack_size = int(round(input_size * 1.25))
    log.run(
        "pack",
        lambda: pack(catalog_path, shard_dir, shard_size=500, workers=workers, image_size=pack_size, seed=seed),
        f"{n_cells} cells, shorter side {pack_size}px",
    )

    fwd = forward_seconds_per_cell(
        model_args.get("backbone", "resnet18"), dict(model_args.get("backbone_kwargs") or {}), input_size
    )
    post = estimate_post_training_seconds(n_cells, fwd)
    train_seconds = pretrain_seconds(minutes, log.elapsed(), post, min_train_seconds)
    train_root = out / "train"
    ckpt = log.run(
        "pretrain",
        lambda: _pretrain(config_path, shard_dir, workers, seed, train_root, max_time(train_seconds)),
        f"{method}, {train_seconds:.0f}s budget (post-training stages estimated at {post:.0f}s)",
    )
    log.run("learning curve", lambda: plot_learning_curve(train_root, out / "learning_curve.png"))

    backbone_dir = log.run("export", lambda: export_checkpoint(ckpt, out / "backbone"))
    emb_dir = out / "emb"
    log.run("embed", lambda: embed(str(backbone_dir), str(shard_dir), emb_dir, num_workers=workers), f"all {n_cells} cells")
    log.run("index build", lambda: build_index(emb_dir, kind="flat"), "flat (exact cosine)")
    probe_result = log.run(
        "probe",
        lambda: probe(
            emb_dir,
            protocol="holdout20",
            fast=True,
            baselines="auto",
            seed=seed,
            out=out / "probe",
            min_cells=min_cells,
            near_duplicates=False,  # hashing every image costs minutes; `ssl-cyto dedup emb/` does it
            command=command + "  # stage: ssl-cyto probe --fast --no-near-duplicates",
        ),
        "holdout20, fast, baselines: random weights + colour histogram; no near-duplicate check",
    )
    log.run(
        "query gallery",
        lambda: query(
            cell_ids=_gallery_picks(emb_dir), index=str(emb_dir), k=GALLERY_NEIGHBOURS, gallery=str(out / "gallery.png")
        ),
        f"one cell per class, {GALLERY_NEIGHBOURS} neighbours",
    )
    log.run("umap", lambda: umap_map(emb_dir, out=out / "umap", seed=seed), "coloured by class and source")
    report = log.run("report", lambda: write_demo_report(out, command, data_desc, method, log, probe_result))
    (out / "stages.json").write_text(json.dumps(log.rows, indent=2))
    print(f"demo finished in {log.elapsed():.0f}s; report: {report}", file=sys.stderr)
    return Path(report)
