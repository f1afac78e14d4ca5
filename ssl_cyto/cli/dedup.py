"""``ssl-cyto dedup``: near-duplicate cells (embedding candidates confirmed by a perceptual hash).

The library call is :func:`ssl_cyto.evaluation.dedup.find_near_duplicates`; the outputs are written
by :func:`ssl_cyto.evaluation.dedup_sheet.write_dedup_outputs`. This module parses the options and
prints the counts.
"""

from __future__ import annotations

import argparse
import sys

from ssl_cyto.cli.exit import EXIT_OK

# as ssl_cyto.evaluation.dedup (not imported here: ``--help`` stays light)
DEFAULT_THRESHOLD = 30
DEFAULT_CANDIDATES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto dedup``."""
    parser.add_argument("emb_dir", metavar="EMB_DIR", help="embedding folder written by `ssl-cyto embed`")
    parser.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_THRESHOLD,
        help=f"largest perceptual-hash distance (bits of 256) of a near-duplicate pair (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"nearest cells by embedding checked on the images, per cell (default {DEFAULT_CANDIDATES})",
    )
    parser.add_argument(
        "--out", default=None, help="output folder for pairs.csv and pairs.png (default EMB_DIR/dedup)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ssl-cyto dedup``: print the pair counts and where they are listed."""
    from pathlib import Path

    from ssl_cyto.evaluation.dedup import find_near_duplicates
    from ssl_cyto.evaluation.dedup_sheet import write_dedup_outputs
    from ssl_cyto.formats.embeddings import read_embedding_folder
    from ssl_cyto.formats.outputs import check_output_dir

    out = Path(args.out) if args.out else Path(args.emb_dir) / "dedup"
    check_output_dir(out, "--out")
    result = find_near_duplicates(args.emb_dir, threshold=args.threshold, candidates=args.candidates)
    cells = read_embedding_folder(args.emb_dir).cells
    written = write_dedup_outputs(result, cells, out)
    scopes = result.pairs["scope"].value_counts().to_dict() if len(result.pairs) else {}
    print(
        f"{len(result.pairs)} near-duplicate pairs among {result.n_cells} cells "
        f"(hash distance <= {args.threshold} of 256 bits; {result.n_candidates} candidate pairs checked): "
        f"{scopes.get('within source', 0)} within a source, {scopes.get('across sources', 0)} across sources"
    )
    for col, n in result.leaks.items():
        print(f"  {n} pairs straddle train and test of the saved split '{col}' (split.parquet)")
    if result.unreadable:
        print(
            f"  {len(result.unreadable)} images could not be read, e.g. {result.unreadable[0]}",
            file=sys.stderr,
        )
    print(written["csv"])
    if written["png"]:
        print(written["png"])
    return EXIT_OK
