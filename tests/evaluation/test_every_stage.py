"""Every stage of the pipeline on 2,000 generated cells, through ``benchmarks/scale.py`` (slow).

scan -> pack -> embed (tiny_cnn, 64 px) -> index build (flat, HNSW) -> probe --fast -> probe (default:
C sweep, both baselines in one pass, near-duplicate check) -> dedup -> umap of every cell, each as
the benchmark runs it (every option written out), with its wall time, peak memory and load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_stage_on_2000_generated_cells(tmp_path: Path) -> None:
    from ssl_cyto.data.synth import synthesize

    cells = synthesize(tmp_path / "cells", layout="folder", per_class=400, seed=0, size=72)
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "scale.py"),
        "--work", str(tmp_path / "work"),
        "--cells-dir", str(cells),
        "--sizes", "2000",
        "--results", str(results),
        "--budget-minutes", "20",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=REPO, timeout=1500)
    rows = json.loads((results / "scale.json").read_text())["rows"]
    stages = [r["stage"] for r in rows]
    assert stages == [
        "scan", "pack", "embed", "index build (flat)", "index build (hnsw)",
        "probe --fast", "probe", "dedup", "umap",
    ]  # fmt: skip
    assert all(r["status"] == "ok" and r["load_avg"] is not None and r["other_cores"] >= 0 for r in rows), rows
    work = tmp_path / "work" / "run_2000"
    assert (work / "shards" / "image_hashes.parquet").exists()
    probe = json.loads((work / "probe" / "probe.json").read_text())
    assert len(probe["models"]) == 2  # tiny_cnn by name has random weights: the colour baseline only
    (task,) = probe["tasks"].values()
    assert task["near_duplicates"]["n_test"] == task["n_test"]
    assert len(pd.read_parquet(work / "umap" / "umap.parquet")) == 2000
    assert "| load avg | other work (cores) |" in (results / "scale.md").read_text()
    # rerun one stage on the same pack and embedding: its row is replaced, the others kept
    subprocess.run([*cmd, "--stages", "dedup"], check=True, env=env, cwd=REPO, timeout=600)
    again = json.loads((results / "scale.json").read_text())["rows"]
    assert sorted(r["stage"] for r in again) == sorted(stages)
    assert [r for r in again if r["stage"] != "dedup"] == [r for r in rows if r["stage"] != "dedup"]
