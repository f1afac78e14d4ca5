"""Helpers of tests/cli/test_never_silent.py: run ``ssl-cyto`` as a user does, and small data sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

TIMEOUT_S = 300


@dataclass
class Result:
    """What a finished ``ssl-cyto`` process left: its exit status and its two streams."""

    rc: int
    out: str
    err: str

    def one_error_line(self) -> str:
        """The stderr error line, asserting it is one line with no traceback."""
        assert "Traceback" not in self.err, self.err
        errors = [line for line in self.err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, self.err
        return errors[0]


def env() -> dict[str, str]:
    """The environment of a child: one thread, offline, no colour."""
    e = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", SSL_CYTO_PROGRESS_INTERVAL="0")
    e.pop("PYTHONWARNINGS", None)
    return e


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = TIMEOUT_S) -> Result:
    """Run ``python -m ssl_cyto ARGS`` in a subprocess (stderr is a pipe, not a terminal)."""
    cmd = [sys.executable, "-m", "ssl_cyto", *[str(a) for a in args]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env(), check=False)
    return Result(p.returncode, p.stdout, p.stderr)


def copy_cells(src: Path, dst: Path, n_per_class: int | None = None) -> Path:
    """A folder ``dst/<class>/<file>`` with (the first ``n_per_class``) images of a synth folder."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.is_file())[: n_per_class or None]
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


def write_odd_images(folder: Path) -> None:
    """A 1 x 1 and a 5000 x 5000 image (under 16 px / over 4096 px on a side) in class folder ``odd``."""
    (folder / "odd").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1, 1), (200, 50, 50)).save(folder / "odd" / "dot.png")
    Image.new("RGB", (5000, 5000), (230, 230, 230)).save(folder / "odd" / "slide.png")
