"""The demo's ``report.md``: stage times, the probe's headline tables, artefacts and every figure."""

from __future__ import annotations

import os
from pathlib import Path

from ssl_cyto.demo.stages import StageLog
from ssl_cyto.evaluation.probing import headline
from ssl_cyto.evaluation.report import markdown_table, write_report

ARTEFACTS = (
    "catalog.parquet",
    "shards/index.json",
    "train/checkpoints/last.ckpt",
    "backbone/model.json",
    "emb/embeddings.npy",
    "emb/index.faiss",
)


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def headline_tables(probe_result: dict) -> str:
    """One table per probe task (each labelled source): the model beside its baselines."""
    parts = [markdown_table(headline(probe_result, task)) for task in (probe_result.get("tasks") or {})]
    return "\n\n".join(parts) or "(no labelled cells to score)"


def write_demo_report(
    out: Path, command: str, data_desc: str, method: str, log: StageLog, probe_result: dict
) -> Path:
    """Write ``out/report.md`` from the stage log and the probe result; returns its path.

    Figures are found where the stages write them: ``learning_curve.png``, ``probe/*.png``,
    ``gallery.png`` and ``umap/*.png``.
    """
    probe_dir = out / "probe"
    stage_rows = [dict(r) for r in log.rows] + [{"stage": "total", "seconds": round(log.elapsed(), 1), "detail": ""}]
    probe_md = _rel(probe_dir / "report.md", out)
    sections = [
        ("Stages and wall time", markdown_table(stage_rows, ["stage", "seconds", "detail"], float_fmt=".1f")),
        (
            "Headline (holdout 20 %, fast mode; 95 % bootstrap intervals)",
            headline_tables(probe_result)
            + f"\n\nFull tables, per-class figures and paired differences: [{probe_md}]({probe_md}).",
        ),
        (
            "Near-duplicates",
            "The demo's probe does not check test cells for near-copies among the training cells (hashing every "
            "image costs minutes); `ssl-cyto dedup emb/` does, and `ssl-cyto probe` does by default.",
        ),
        ("Artefacts", "\n".join(f"- `{a}`" for a in ARTEFACTS)),
        ("Rerun", f"```\n{command}\n```"),
    ]
    figures = [p for p in [out / "learning_curve.png"] if p.exists()] + sorted(probe_dir.glob("*.png"))
    if (out / "gallery.png").exists():
        figures.append(out / "gallery.png")
    figures += sorted((out / "umap").glob("*.png"))
    return write_report(
        out / "report.md",
        title=f"ssl-cyto demo ({method})",
        command=command,
        data=data_desc,
        sections=sections,
        figures=figures,
    )
