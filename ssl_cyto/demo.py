"""``ssl-cyto demo``: the whole pipeline end to end, through the same functions as a full-scale run.

Stages (each one ``ssl-cyto`` subcommand's Python function)::

    cells (generated AML-LMU + BM-MLL layouts, or --data) -> scan -> pack -> fit -> export -> embed
    -> index build -> probe (fast) -> query gallery -> umap -> report.md

``--minutes`` caps the whole demo's wall time: the stages after pretraining are estimated up front
(from a timed forward pass of the backbone and the number of cells) and pretraining gets the rest, as
Lightning's ``trainer.max_time``. Every cell of ``--data`` is embedded into ``OUT/emb/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class DemoError(RuntimeError):
    """A demo stage failed; the message names the stage and the artefact folder."""


@dataclass
class StageLog:
    """Wall time and outputs of each stage, printed as it goes and written into the report."""

    total_stages: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    t_start: float = field(default_factory=time.monotonic)

    def run(self, name: str, fn: Callable[[], Any], detail: str = "") -> Any:
        i = len(self.rows) + 1
        elapsed = time.monotonic() - self.t_start
        print(
            f"[demo {i}/{self.total_stages}] {name} {detail} (t+{elapsed:.0f}s)", file=sys.stderr, flush=True
        )
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            raise DemoError(f"stage '{name}' failed: {exc}") from exc
        dt = time.monotonic() - t0
        self.rows.append({"stage": name, "seconds": round(dt, 1), "detail": detail})
        print(f"[demo {i}/{self.total_stages}] {name} done in {dt:.1f}s", file=sys.stderr, flush=True)
        return result

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start


def _demo_config(method: str) -> Path:
    path = REPO_CONFIGS / f"demo_{method}.yaml"
    if not path.exists():
        raise DemoError(f"no demo config for method {method!r}: {path} is missing")
    return path


def _forward_seconds_per_cell(backbone: str, backbone_kwargs: dict, input_size: int) -> float:
    """Time the backbone's forward pass on one batch: the basis of the post-training estimate."""
    import torch

    from ssl_cyto.models.backbones import build_backbone

    module, _ = build_backbone(backbone, **backbone_kwargs)
    module.eval()
    x = torch.rand(64, 3, input_size, input_size)
    with torch.no_grad():
        module(x[:8])
        t0 = time.perf_counter()
        module(x)
    return (time.perf_counter() - t0) / 64


def estimate_post_training_seconds(
    n_cells: int, sec_per_cell_forward: float, decode_sec_per_cell: float
) -> float:
    """Wall time of export + embed (model and its random-weights twin, colour floor) + index + probe
    + query + UMAP + report, from measured per-cell costs and fixed overheads measured on 2 CPU cores."""
    embed = n_cells * (2 * (sec_per_cell_forward + decode_sec_per_cell) + decode_sec_per_cell)
    probe = 25.0 + n_cells * 0.004  # three feature sets, logistic regression + kNN + bootstrap (fast mode)
    umap = 25.0 + n_cells * 0.003  # numba compile dominates small maps
    fixed = 30.0  # export, index, query gallery, report, process start-up of the stages
    return 1.25 * (embed + probe + umap + fixed)


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
        method: ``simclr`` or ``dino`` (``configs/demo_<method>.yaml``).
        minutes: cap on the whole demo's wall time.
        per_class: generated cells per class and layout (when ``data`` is None).
        seed: seed for generation, packing, training and splits.
        workers: data-loading / packing worker processes.
        min_train_seconds: pretraining gets at least this long even when the estimate leaves less.
        min_cells: classes with fewer labelled cells are not scored (the demo's generated sets are small;
            the probe's own default is ``MIN_CELLS_TO_SCORE``).
        command: the command line to print in the report (default: ``ssl-cyto demo`` with these args).
    """
    import pandas as pd
    import yaml

    from ssl_cyto.data.catalog import scan, write_catalog
    from ssl_cyto.data.shards import pack
    from ssl_cyto.data.sources import detect_source
    from ssl_cyto.data.synth import synthesize
    from ssl_cyto.embed import embed
    from ssl_cyto.evaluation.probe import probe
    from ssl_cyto.evaluation.report import hardware_summary, markdown_table, write_report
    from ssl_cyto.evaluation.umap import umap_map
    from ssl_cyto.export import export_checkpoint
    from ssl_cyto.fit import run_fit
    from ssl_cyto.retrieval.index import build_index
    from ssl_cyto.retrieval.query import query

    if method not in ("simclr", "dino"):
        raise DemoError(f"--method must be simclr or dino, got {method!r}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = float(minutes) * 60.0
    log = StageLog(total_stages=12)
    config_path = _demo_config(method)
    config = yaml.safe_load(config_path.read_text())
    model_args = config["model"]["init_args"]
    input_size = int(model_args.get("input_size", 64))
    command = command or "ssl-cyto demo " + shlex.join(
        (["--data", str(data)] if data else [])
        + ["--method", method, "--minutes", f"{minutes:g}", "--out", str(out)]
    )

    # 1. cells
    if data is None:
        gen_root = out / "data"

        def _generate() -> list[tuple[str, str]]:
            specs = []
            for layout in ("aml-lmu", "bm-mll"):
                root = synthesize(gen_root / layout, layout=layout, per_class=per_class, seed=seed)
                specs.append((layout, str(root)))
            return specs

        specs = log.run("generate cells", _generate, f"{per_class}/class, AML-LMU TIFF + BM-MLL JPEG layouts")
        data_desc = (
            f"generated cells (`ssl-cyto data synth`, seed {seed}): AML-LMU layout (15 classes, RGBA TIFF) "
            f"and BM-MLL layout (21 classes, JPEG 250x250 in range folders), {per_class} cells per class each"
        )
    else:
        kind = detect_source(data)
        specs = [(kind, str(Path(data).resolve()))]
        log.rows.append({"stage": "generate cells", "seconds": 0.0, "detail": f"skipped: --data {data}"})
        data_desc = f"`{data}` read as source kind `{kind}`"

    # 2. scan
    catalog_path = out / "catalog.parquet"

    def _scan() -> pd.DataFrame:
        df = scan(specs)
        write_catalog(df, catalog_path)
        return df

    catalog = log.run("scan", _scan, " + ".join(k for k, _ in specs))
    n_cells = len(catalog)

    # 3. pack (re-encoded at a small size: the demo trains at input_size px)
    shard_dir = out / "shards"
    pack_size = int(round(input_size * 1.25))
    index = log.run(
        "pack",
        lambda: pack(
            catalog_path, shard_dir, shard_size=500, workers=workers, image_size=pack_size, seed=seed
        ),
        f"{n_cells} cells, shorter side {pack_size}px",
    )
    pack_seconds = log.rows[-1]["seconds"]
    decode_sec = max(pack_seconds / max(n_cells, 1) * workers / 4.0, 2e-4)

    # 4. pretrain for the time that is left
    fwd = _forward_seconds_per_cell(
        model_args.get("backbone", "resnet18"), dict(model_args.get("backbone_kwargs") or {}), input_size
    )
    post = estimate_post_training_seconds(n_cells, fwd, decode_sec)
    train_seconds = max(min_train_seconds, budget - log.elapsed() - post)
    train_root = out / "train"
    fit_args = [
        "--config",
        str(config_path),
        "--data.data",
        str(shard_dir),
        "--data.num_workers",
        str(workers),
        "--seed_everything",
        str(seed),
        "--trainer.default_root_dir",
        str(train_root),
        "--trainer.max_time",
        _max_time(train_seconds),
    ]
    ckpt = log.run(
        "pretrain",
        lambda: run_fit(fit_args),
        f"{method}, {train_seconds:.0f}s budget (post-training stages estimated at {post:.0f}s)",
    )

    log.run("learning curve", lambda: plot_learning_curve(train_root, out / "learning_curve.png"))

    # 5. export, 6. embed
    backbone_dir = log.run("export", lambda: export_checkpoint(ckpt, out / "backbone"))
    emb_dir = out / "emb"
    log.run(
        "embed",
        lambda: embed(str(backbone_dir), str(shard_dir), emb_dir, num_workers=workers),
        f"all {n_cells} cells",
    )

    # 7. index
    log.run("index build", lambda: build_index(emb_dir, kind="flat"), "flat (exact cosine)")

    # 8. probe (fast) with the random-weights and colour baselines
    probe_dir = out / "probe"
    probe_result = log.run(
        "probe",
        lambda: probe(
            emb_dir,
            protocol="holdout20",
            fast=True,
            baselines="auto",
            seed=seed,
            out=probe_dir,
            min_cells=min_cells,
            command=command + "  # stage: ssl-cyto probe --fast",
        ),
        "holdout20, fast, baselines: random weights + colour histogram",
    )

    # 9. query gallery: one test cell per class, its neighbours from the index
    gallery_png = out / "gallery.png"

    def _gallery() -> Any:
        cells = pd.read_parquet(emb_dir / "cells.parquet")
        labelled = cells[cells["label"].notna()]
        picks = labelled.groupby(["source", "label"], sort=True).head(1)
        picks = picks.groupby("source").head(8)["cell_id"].tolist()[:8]
        return query(cell_ids=picks, index=str(emb_dir), k=6, gallery=str(gallery_png))

    log.run("query gallery", _gallery, "one cell per class, 6 neighbours")

    # 10. umap
    umap_dir = out / "umap"
    umap_out = log.run(
        "umap", lambda: umap_map(emb_dir, out=umap_dir, seed=seed), "coloured by class and source"
    )

    # 11. report
    report = log.run(
        "report",
        lambda: _write_demo_report(
            out,
            command,
            data_desc,
            method,
            log,
            probe_result,
            probe_dir,
            gallery_png,
            umap_out,
            index,
            train_seconds,
            hardware_summary,
            markdown_table,
            write_report,
        ),
    )
    (out / "stages.json").write_text(json.dumps(log.rows, indent=2))
    print(f"demo finished in {log.elapsed():.0f}s; report: {report}", file=sys.stderr)
    return Path(report)


def plot_learning_curve(train_root: str | Path, out_png: str | Path) -> Path | None:
    """Online kNN accuracy and training loss against the step, from the run's CSV log.

    Args:
        train_root: the run's ``trainer.default_root_dir`` (holds ``csv/version_*/metrics.csv``).
        out_png: the figure to write.

    Returns:
        The PNG path, or None when the run logged no CSV metrics.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    files = sorted(Path(train_root).glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    fig, ax1 = plt.subplots(figsize=(7, 4), dpi=120)
    if "knn/acc" in df:
        knn = df.dropna(subset=["knn/acc"]).drop_duplicates("step", keep="last")
        ax1.plot(
            knn["step"],
            knn["knn/acc"],
            "o-",
            color="tab:blue",
            ms=3,
            label="online kNN-20 accuracy (val subset)",
        )
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel("online kNN-20 accuracy", color="tab:blue")
    loss_col = "train/loss_step" if "train/loss_step" in df else "train/loss"
    if loss_col in df:
        ax2 = ax1.twinx()
        loss = df.dropna(subset=[loss_col])
        ax2.plot(loss["step"], loss[loss_col], color="tab:orange", alpha=0.6, lw=1, label="training loss")
        ax2.set_ylabel("training loss", color="tab:orange")
    ax1.set_title("Pretraining: online kNN accuracy and loss")
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _max_time(seconds: float) -> str:
    s = int(seconds)
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def _headline_tables(probe_result: dict, markdown_table: Callable[..., str]) -> str:
    """One table per probe task (each labelled source): the model beside its baselines."""
    from ssl_cyto.evaluation.probe import headline

    parts = [markdown_table(headline(probe_result, task)) for task in (probe_result.get("tasks") or {})]
    return "\n\n".join(parts) or "(no labelled cells to score)"


def _write_demo_report(
    out: Path,
    command: str,
    data_desc: str,
    method: str,
    log: StageLog,
    probe_result: dict,
    probe_dir: Path,
    gallery_png: Path,
    umap_out: Any,
    index: dict,
    train_seconds: float,
    hardware_summary: Callable[[], str],
    markdown_table: Callable[..., str],
    write_report: Callable[..., Path],
) -> Path:
    stage_rows = [dict(r) for r in log.rows] + [
        {"stage": "total", "seconds": round(log.elapsed(), 1), "detail": ""}
    ]
    sections = [
        ("Stages and wall time", markdown_table(stage_rows, ["stage", "seconds", "detail"], float_fmt=".1f")),
        (
            "Headline (holdout 20 %, fast mode; 95 % bootstrap intervals)",
            _headline_tables(probe_result, markdown_table)
            + f"\n\nFull tables, per-class figures and paired differences: [{_rel(probe_dir / 'report.md', out)}]"
            f"({_rel(probe_dir / 'report.md', out)}).",
        ),
    ]
    figures = [p for p in [out / "learning_curve.png"] if p.exists()] + sorted(probe_dir.glob("*.png"))
    if gallery_png.exists():
        figures.append(gallery_png)
    umap_dir = out / "umap"
    figures += sorted(umap_dir.glob("*.png"))
    sections.append(
        (
            "Artefacts",
            "\n".join(
                f"- `{_rel(p, out)}`"
                for p in [
                    out / "catalog.parquet",
                    out / "shards" / "index.json",
                    out / "train" / "checkpoints" / "last.ckpt",
                    out / "backbone" / "model.json",
                    out / "emb" / "embeddings.npy",
                    out / "emb" / "index.faiss",
                ]
            ),
        )
    )
    sections.append(("Rerun", f"```\n{command}\n```"))
    return write_report(
        out / "report.md",
        title=f"ssl-cyto demo ({method})",
        command=command,
        data=data_desc,
        sections=sections,
        figures=figures,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default=None, help="image folder (any source layout); default: generated cells"
    )
    parser.add_argument("--method", choices=["simclr", "dino"], default="simclr")
    parser.add_argument("--minutes", type=float, default=10.0, help="cap on the whole demo's wall time")
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--per-class", type=int, default=40, help="generated cells per class and layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="packing and loading worker processes")
    parser.add_argument(
        "--min-cells",
        type=int,
        default=10,
        help="classes with fewer labelled cells are not scored by the probe",
    )


def main(args: argparse.Namespace) -> int:
    cmd = "ssl-cyto " + shlex.join(sys.argv[1:]) if sys.argv and "demo" in sys.argv else None
    try:
        run_demo(
            out=args.out,
            data=args.data,
            method=args.method,
            minutes=args.minutes,
            per_class=args.per_class,
            seed=args.seed,
            workers=args.workers,
            min_cells=args.min_cells,
            command=cmd,
        )
    except DemoError as exc:
        print(f"ssl-cyto demo: {exc}", file=sys.stderr)
        return 1
    return 0
