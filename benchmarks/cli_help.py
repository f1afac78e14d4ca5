"""How long ``ssl-cyto --help`` and each command's ``--help`` take: median of 5 runs each.

Usage (from the repository root)::

    python benchmarks/cli_help.py --out results/benchmarks/cli.md

Each run is a fresh ``python -m ssl_cyto ... --help`` process, so the figure includes the
interpreter's start-up. ``fit --help`` is a LightningCLI (it imports torch and Lightning).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ssl_cyto.cli import COMMANDS
from ssl_cyto.formats.provenance import hardware_summary


def time_help(words: tuple[str, ...], repeats: int = 5) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ssl_cyto", *words, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmarks/cli.md")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for words in [(), *COMMANDS]:
        times = time_help(words, args.repeats)
        label = "ssl-cyto " + " ".join((*words, "--help"))
        rows.append((label, statistics.median(times), min(times), max(times)))
        print(f"{label:<40} median {rows[-1][1]:.3f} s", flush=True)
    lines = [
        "# `--help` start-up time",
        "",
        f"Command: `python benchmarks/cli_help.py --out {args.out}` "
        f"({args.repeats} fresh processes per row, median; {datetime.now(timezone.utc):%Y-%m-%d}).",
        f"Hardware: {hardware_summary()}.",
        "",
        "| command | median s | min s | max s |",
        "|---|---|---|---|",
        *[f"| `{label}` | {med:.3f} | {lo:.3f} | {hi:.3f} |" for label, med, lo, hi in rows],
        "",
        "Every row but `fit` imports only the standard library and the command's own CLI module"
        " (tests/cli/test_help.py asserts that torch, pytorch_lightning, pandas and faiss stay unloaded);"
        " `fit --help` builds the LightningCLI parser, which imports torch and Lightning.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
