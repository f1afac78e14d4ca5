"""``ssl-cyto dedup`` through the entry point: pairs.csv + pairs.png, and an unwritable --out fails first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ssl_cyto.cli import COMMANDS
from ssl_cyto.cli import dedup as dedup_cli
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.dedup import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD
from tests.evaluation.planted import planted_tree

REPO = Path(__file__).resolve().parents[2]
# until ("dedup",) is in ssl_cyto.cli.COMMANDS, the same wiring as ssl_cyto.cli.main
WIRED = (
    "import argparse, sys\n"
    "from ssl_cyto.cli import dedup\n"
    "from ssl_cyto.cli.exit import guarded\n"
    "p = argparse.ArgumentParser(prog='ssl-cyto dedup')\n"
    "dedup.add_arguments(p)\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(guarded(lambda: dedup.run(a)))\n"
)


def _dedup(*args: str) -> subprocess.CompletedProcess:
    cmd = (
        [sys.executable, "-m", "ssl_cyto", "dedup"]
        if ("dedup",) in COMMANDS
        else [sys.executable, "-c", WIRED]
    )
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def emb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    base = tmp_path_factory.mktemp("dedup_cli")
    tree, planted = planted_tree(base, seed=2)  # 70 originals: each planted copy has its own
    return embed("colour_hist", tree, base / "emb", progress=False), len(planted)


def test_cli_defaults_agree_with_the_library() -> None:
    assert dedup_cli.DEFAULT_THRESHOLD == DEFAULT_THRESHOLD
    assert dedup_cli.DEFAULT_CANDIDATES == DEFAULT_CANDIDATES


def test_dedup_writes_pairs_and_sheet(emb: tuple[Path, int]) -> None:
    folder, n_planted = emb
    proc = _dedup(str(folder))
    assert proc.returncode == 0, proc.stderr
    assert f"{n_planted} near-duplicate pairs among" in proc.stdout
    pairs = pd.read_csv(folder / "dedup" / "pairs.csv")
    assert len(pairs) == n_planted
    assert (folder / "dedup" / "pairs.png").stat().st_size > 10_000


def test_dedup_out_unwritable_fails_before_the_work(emb: tuple[Path, int]) -> None:
    proc = _dedup(str(emb[0]), "--out", "/proc/x/dedup")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert (
        len(lines) == 1 and lines[0].startswith("error: cannot create /proc/x/dedup") and "--out" in lines[0]
    )


def test_dedup_without_images_says_where_to_run_it(tmp_path: Path) -> None:
    import numpy as np

    from tests.evaluation.emb_folders import write_emb_dir

    folder = write_emb_dir(tmp_path / "emb", np.eye(4), ["a", "b", "a", "b"])
    proc = _dedup(str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "image not found" in proc.stderr and "where the embedded images are" in proc.stderr
    assert not (folder / "dedup").exists()
