"""benchmarks/gpu_check.py --dry-run: the GPU check's code path on the CPU with tiny sizes (every stage
runs or says why it is skipped, and the figures are written after each stage; nothing under results/)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_dry_run_writes_every_stage(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = gpu_check.main(["--dry-run", "--out", str(tmp_path / "gc")])
    data = json.loads((out / "gpu.json").read_text())
    stages = data["stages"]
    assert list(stages) == ["env", "simclr_resnet50", "dino_vits16", "ddp", "faiss"]
    for name in ("simclr_resnet50", "dino_vits16"):
        figs = stages[name]
        assert figs["eager_images_per_s"] > 0 and figs["compiled_images_per_s"] > 0, figs
        assert figs["train_gflop_per_step"] > 0 and figs["eager_mfu"] == "n/a"  # no peak known for a CPU
    assert "skipped" in stages["ddp"]
    assert "skipped" in stages["faiss"] or stages["faiss"]["self_hit_rate"] == 1.0
    assert "## dino_vits16" in (out / "gpu.md").read_text()


def test_wheel_preparation_script_and_its_documented_command() -> None:
    import subprocess

    repo = SCRIPT.parents[1]
    wheels = repo / "benchmarks" / "gpu_wheels.sh"
    assert subprocess.run(["bash", "-n", str(wheels)], capture_output=True).returncode == 0
    text = wheels.read_text()
    assert "--only-binary=:all:" in text and "--python-version 3.12" in text and "--no-deps" in text
    if (repo / ".git").exists():  # a git checkout: the wheels never enter git
        ignored = subprocess.run(["git", "check-ignore", "-q", "cache/gpu_wheels/x.whl"], cwd=repo)
        assert ignored.returncode == 0
    docs = (repo / "docs" / "training.md").read_text()
    assert "pip install --no-index --no-deps --find-links cache/gpu_wheels" in docs
    assert "timeout 300 python benchmarks/gpu_check.py" in docs


def test_the_tasks_import_without_pandas_or_pyarrow() -> None:
    """The GPU bundle carries no pandas / pyarrow (pyarrow alone is 55 MiB of the 64): the training tasks
    must import without them, and every name of ``ssl_cyto.data.loading`` must still resolve."""
    code = (
        "import sys\n"
        "sys.modules['pandas'] = None\n"
        "sys.modules['pyarrow'] = None\n"
        "from ssl_cyto.tasks import DINO, DINOv2, SimCLR\n"
        "from ssl_cyto.data.loading import mix_seed\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    import ssl_cyto.data.loading as loading

    for name in loading.__all__:
        assert getattr(loading, name) is not None, name
