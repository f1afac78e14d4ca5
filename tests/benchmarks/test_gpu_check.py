"""benchmarks/gpu_check.py --dry-run: the GPU check's code path on the CPU with tiny sizes (every stage
runs or says why it is skipped, and the figures are written after each stage; nothing under results/)."""

from __future__ import annotations

import importlib.util
import json
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
