"""``ssl-cyto query``: similar cells for query images or cell ids (:func:`ssl_cyto.retrieval.query`)."""

from __future__ import annotations

import argparse
import json
import sys

from ssl_cyto.cli.exit import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto query``."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="query image file(s)")
    parser.add_argument(
        "--index", required=True, help="embedding folder with index.faiss (or the .faiss/.json file)"
    )
    parser.add_argument(
        "--model", help="backbone for the query images (default: the one that embedded the indexed cells)"
    )
    parser.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument(
        "--cell-id", action="append", default=[], metavar="ID", help="query an indexed cell by id"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--gallery", metavar="PNG", help="also write a gallery image (query left, neighbours right)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (for embedding the query images)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights when --model is a name")
    parser.add_argument("--nprobe", type=int, help="IVF lists searched (override the index's)")
    parser.add_argument("--ef-search", type=int, help="HNSW candidate list (override the index's)")


def run(args: argparse.Namespace) -> int:
    """Query, then print the neighbours as JSON or a table."""
    from ssl_cyto.retrieval.search import format_table, query

    results = query(
        args.images,
        args.index,
        model=args.model,
        k=args.k,
        cell_ids=args.cell_id,
        gallery=args.gallery,
        device=args.device,
        seed=args.seed,
        nprobe=args.nprobe,
        ef_search=args.ef_search,
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results), end="")
    if args.gallery:
        print(f"wrote {args.gallery}", file=sys.stderr)
    return EXIT_OK
