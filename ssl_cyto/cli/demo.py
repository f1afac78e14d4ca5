"""``ssl-cyto demo``: the whole pipeline on generated cells (or ``--data FOLDER``) to one report.md."""

from __future__ import annotations

import argparse
import shlex
import sys

from ssl_cyto.cli.checks import check_output_dir

RESUME_HINT = "rerun the same command: finished stages' artefacts are reused where they are resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ssl_cyto.tasks.registry import method_names  # torch-free table

    parser.add_argument(
        "--data", default=None, help="image folder (any source layout); default: generated cells"
    )
    parser.add_argument("--method", choices=method_names(), default="simclr", help="method of the registry")
    parser.add_argument("--minutes", type=float, default=10.0, help="cap on the whole demo's wall time")
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--per-class", type=int, default=40, help="generated cells per class and layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="packing and loading worker processes")
    parser.add_argument(
        "--min-cells",
        type=int,
        default=10,
        help="classes with fewer labelled cells are not scored by the probe",
    )


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    from ssl_cyto.demo.pipeline import run_demo

    cmd = "ssl-cyto " + shlex.join(sys.argv[1:]) if sys.argv and "demo" in sys.argv else None
    run_demo(
        out=args.out,
        data=args.data,
        method=args.method,
        minutes=args.minutes,
        per_class=args.per_class,
        seed=args.seed,
        workers=args.workers,
        min_cells=args.min_cells,
        command=cmd,
    )
    return 0
