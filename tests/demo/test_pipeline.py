"""`ssl-cyto demo` at a reduced size: every stage leaves its artefact and the report matches them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path: Path) -> None:
    from ssl_cyto.cli import main

    out = tmp_path / "demo"
    # 12 cells per class and layout (180 AML-LMU + 252 BM-MLL); about 2 minutes on 2 cores.
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--minutes",
            "3",
            "--per-class",
            "12",
            "--min-cells",
            "8",
            "--workers",
            "1",
        ]
    )
    assert code == 0

    # every stage produced its artefact
    for rel in [
        "data/aml-lmu/annotations.dat",
        "data/bm-mll/abbreviations.csv",
        "catalog.parquet",
        "shards/index.json",
        "train/checkpoints/last.ckpt",
        "backbone/model.json",
        "emb/embeddings.npy",
        "emb/cells.parquet",
        "emb/index.faiss",
        "emb/index.faiss.json",
        "emb/split.parquet",
        "probe/probe.json",
        "gallery.png",
        "learning_curve.png",
        "report.md",
        "stages.json",
    ]:
        assert (out / rel).exists(), f"missing artefact {rel}"
    assert list((out / "umap").glob("*.png")), "no UMAP figure"

    catalog = pd.read_parquet(out / "catalog.parquet")
    cells = pd.read_parquet(out / "emb" / "cells.parquet")
    emb = np.load(out / "emb" / "embeddings.npy")
    index = json.loads((out / "shards" / "index.json").read_text())
    assert len(catalog) == 15 * 12 + 21 * 12
    assert index["total_cells"] == len(catalog)
    assert sorted(cells["cell_id"]) == sorted(catalog["cell_id"]), "every cell embedded exactly once"
    assert emb.shape[0] == len(cells)

    # the report's headline numbers are the probe's numbers
    report = (out / "report.md").read_text()
    probe = json.loads((out / "probe" / "probe.json").read_text())
    from ssl_cyto.evaluation.probing import headline

    for task in probe["tasks"]:
        for row in headline(probe, task):
            assert row["linear acc."] in report
            assert row["kNN-20 bal. acc."] in report
    stages = json.loads((out / "stages.json").read_text())
    for row in stages:
        if row["stage"] == "report":  # its own time is known only after the report is written
            continue
        assert re.search(rf"\| {re.escape(row['stage'])} \| {row['seconds']:.1f} \|", report), row
    assert "ssl-cyto demo" in report.splitlines()[1]
    for fig in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / fig).exists(), f"report links a missing figure {fig}"
