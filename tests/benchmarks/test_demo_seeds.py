"""benchmarks/demo_seeds.py's table: rows of several invocations keep their own commands and hardware,
and rows paired with a previous recipe (``--compare-to``) get the paired-difference table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_seeds.py"
SEEDS = Path(__file__).resolve().parents[2] / "results" / "pbc" / "seeds.json"


def _module():
    spec = importlib.util.spec_from_file_location("demo_seeds_bench", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_rows_get_their_table_and_every_command_is_named() -> None:
    mod = _module()
    rows = json.loads(SEEDS.read_text())  # the committed results, some rows paired, some not
    assert all("made_by" in r and "hardware" in r for r in rows)
    unpaired = [r for r in rows if "knn20_minus_previous" not in r]
    assert unpaired and "Paired with the previous recipe" not in mod.render(unpaired, "# t")
    iv = {"estimate": 0.03, "low": 0.01, "high": 0.05}
    new = {
        **unpaired[3],
        "method": "dino_test",
        "made_by": "python benchmarks/demo_seeds.py --label dino_test",
        "hardware": "another machine",
        "knn20_minus_previous": iv,
        "linear_minus_previous": iv,
    }
    text = mod.render([*unpaired, new], "# t")
    assert "Paired with the previous recipe" in text
    assert "| dino_test | 0 | +0.030 [+0.010, +0.050] | +0.030 [+0.010, +0.050] |" in text
    assert "`python benchmarks/demo_seeds.py --label dino_test`" in text and "another machine" in text
