"""``ssl-cyto umap``: 2-D UMAP maps of an embedding folder coloured by class and by source.

The library call is :func:`ssl_cyto.evaluation.umap_map.umap_map`; this module parses the options and
prints the report's path.
"""

from __future__ import annotations

import argparse

from ssl_cyto.cli.exit import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto umap``."""
    parser.add_argument("emb_dir", metavar="EMB_DIR", help="embedding folder written by `ssl-cyto embed`")
    parser.add_argument(
        "--max-points",
        type=int,
        default=20000,
        help="cells UMAP is fitted on, stratified by source and label (default 20000); every other cell "
        "is placed on the fitted map (UMAP.transform)",
    )
    parser.add_argument(
        "--sample-only", action="store_true", help="draw only the fitted sample, not every cell"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and of UMAP")
    parser.add_argument("--out", default=None, help="output folder (default EMB_DIR/umap)")


def run(args: argparse.Namespace) -> int:
    """Run ``ssl-cyto umap``: print the report's path."""
    from pathlib import Path

    from ssl_cyto.evaluation.umap_map import umap_map
    from ssl_cyto.formats.outputs import check_output_dir

    check_output_dir(Path(args.out) if args.out else Path(args.emb_dir) / "umap", "--out")
    result = umap_map(
        args.emb_dir, max_points=args.max_points, seed=args.seed, out=args.out, sample_only=args.sample_only
    )
    print(result["report"])
    return EXIT_OK
