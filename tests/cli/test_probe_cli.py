"""``ssl-cyto probe`` and ``ssl-cyto umap`` through the entry point: never silent, outputs checked first.

Issue 14, item 5 and the progress / output-path items: ``--help`` shows the minimum of cells per
class as a number, the "nothing to score" error names ``--min-cells``, a failed run leaves no empty
``probe/``, skipped classes are said once with the option that changes it, both commands print a
line per stage with the elapsed time, and an unwritable ``--out`` fails before any work with
"cannot create". Expected errors are one line on stderr, no traceback, exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ssl_cyto.cli import probe as probe_cli
from ssl_cyto.data.vocabulary import MIN_CELLS_TO_SCORE
from ssl_cyto.evaluation.protocol import FAST_C, PROTOCOLS
from tests.evaluation.emb_folders import blobs, write_emb_dir

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ssl_cyto", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [
        ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("probe: [", "umap: ["))
    ]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_constants_agree_with_the_library() -> None:
    assert probe_cli.PROTOCOLS == PROTOCOLS
    assert probe_cli.FAST_C == FAST_C
    assert probe_cli.MIN_CELLS == MIN_CELLS_TO_SCORE


def test_help_shows_the_minimum_as_a_number() -> None:
    proc = _run("probe", "--help", timeout=60)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert f"(default {MIN_CELLS_TO_SCORE};" in text and "MIN_CELLS_TO_SCORE" not in text
    assert "dinobloom" in text and "DinoBloom's published evaluation" in text
    assert "80/20 (DinoBloom)" not in text


def test_too_few_cells_names_min_cells_and_leaves_no_probe_folder(tmp_path: Path) -> None:
    x, labels = blobs(10, 3)  # 10 cells per class, below the default 50
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    line = _one_line_error(_run("probe", str(emb), "--fast", "--baselines", "none"))
    assert "--min-cells" in line and str(emb) in line
    assert not (emb / "probe").exists()


def test_skipped_classes_said_once_with_the_option_and_progress_lines(tmp_path: Path) -> None:
    x, labels = blobs(12, 3)
    labels[:2] = ["RARE", "RARE"]
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    proc = _run("probe", str(emb), "--fast", "--baselines", "none", "--min-cells", "5", "--n-boot", "20")
    assert proc.returncode == 0, proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if "not scored" in ln]
    assert len(skipped) == 1 and "RARE (2)" in skipped[0] and "--min-cells" in skipped[0]
    stages = [ln for ln in proc.stderr.splitlines() if ln.startswith("probe: [")]
    assert len(stages) >= 4 and all(" s] " in ln for ln in stages)


def test_probe_out_unwritable_fails_first(tmp_path: Path) -> None:
    x, labels = blobs(12, 3)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    line = _one_line_error(_run("probe", str(emb), "--fast", "--out", "/proc/x/probe"))
    assert "cannot create /proc/x/probe" in line and "--out" in line
    assert not (emb / "split.parquet").exists()  # no work done


def test_umap_out_unwritable_fails_before_the_work(tmp_path: Path) -> None:
    x, labels = blobs(12, 3)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    proc = _run("umap", str(emb), "--out", "/proc/x")
    line = _one_line_error(proc)
    assert line.startswith("error: cannot create /proc/x") and "--out" in line
    assert "umap: [" not in proc.stderr  # failed before the first stage


def test_umap_progress_lines(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = write_emb_dir(tmp_path / "emb", rng.normal(size=(30, 4)), ["a", "b", "c"] * 10)
    proc = _run("umap", str(emb))
    if proc.returncode == 2 and "umap-learn" in proc.stderr:
        return  # optional dependency absent: the error itself is covered elsewhere
    assert proc.returncode == 0, proc.stderr
    stages = [ln for ln in proc.stderr.splitlines() if ln.startswith("umap: [")]
    assert len(stages) >= 3 and stages[-1].endswith("report.md")
