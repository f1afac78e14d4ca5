"""A plain (non-editable) install works: the wheel, installed into a fresh virtual environment, runs
``ssl-cyto demo --minutes 3`` from a directory outside the repository to its report.

The new environment reuses the dependencies already installed beside the test's interpreter (a
``.pth`` path entry to that site-packages, and ``pip install --no-deps`` of the wheel), so no
download is needed; ``ssl_cyto`` itself must come from the new environment, with PYTHONPATH unset.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_wheel_runs_the_demo_outside_the_repo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)])
    (wheel,) = dist.glob("ssl_cyto-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the dependencies of the test's environment, as a plain path entry (its .pth files, among them the
    # editable install of this checkout, are not processed)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import ssl_cyto; print(ssl_cyto.__file__)"], cwd=work, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), f"ssl_cyto imported from {where}, not from the new environment"
    assert not Path(where).is_relative_to(REPO)
    args = ["demo", "--minutes", "3", "--per-class", "12", "--min-cells", "8", "--workers", "1", "--out", "demo"]
    _run([str(venv / "bin" / "ssl-cyto"), *args], cwd=work, env=env, timeout=900)
    report = (work / "demo" / "report.md").read_text()
    assert "ssl-cyto demo" in report
    assert (work / "demo" / "emb" / "index.faiss").exists()
