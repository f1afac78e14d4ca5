"""``ssl-cyto data synth OUT --layout L [--per-class N] [--seed S] [--size PX]``: generated cells."""

from __future__ import annotations

import argparse
import os
import time

from ssl_cyto.cli.checks import check_output_dir
from ssl_cyto.cli.exit import EXIT_OK

# The layouts of ssl_cyto.data.synth.LAYOUTS, spelled out so that `--help` imports no numpy/scipy;
# tests/cli/test_synth.py checks that the two agree.
LAYOUT_CHOICES = ("aml-lmu", "bm-mll", "folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data synth``."""
    parser.add_argument("out", help="destination folder (the PATH to give to the matching source)")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES, required=True, help="which real layout to mirror")
    parser.add_argument("--per-class", type=int, default=20, help="cells per class (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=None, help="image side in px (default: the real size)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="parallel processes (default: up to 4)",
    )
    parser.add_argument(
        "--range-size",
        type=int,
        default=1000,
        help="bm-mll: cells per range folder (default 1000, as released)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the cells with :func:`ssl_cyto.data.synth.synthesize` and say how to scan them."""
    check_output_dir(args.out, "OUT")
    from ssl_cyto.data.synth import layout_classes, synthesize

    t0 = time.perf_counter()
    out = synthesize(
        args.out,
        args.layout,
        args.per_class,
        args.seed,
        size=args.size,
        range_size=args.range_size,
        progress=True,
        workers=args.workers,
    )
    dt = time.perf_counter() - t0
    n = args.per_class * len(layout_classes(args.layout))
    print(f"wrote {n} {args.layout} cells to {out} in {dt:.1f} s ({n / dt:.0f} images/s)")
    print(f"read them with: ssl-cyto data scan {args.layout}={out} --out catalog.parquet")
    return EXIT_OK
