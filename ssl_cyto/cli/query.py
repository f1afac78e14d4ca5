"""``ssl-cyto query``: similar cells for query images or cell ids (:func:`ssl_cyto.retrieval.query`)."""

from __future__ import annotations

import argparse
import json
import sys

from ssl_cyto.cli.checks import add_allow_missing, check_output_file, note, report_missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto query``."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="query image file(s)")
    parser.add_argument(
        "--index", required=True, help="embedding folder with index.faiss (or the .faiss/.json file)"
    )
    parser.add_argument(
        "--model",
        help="backbone for the query images (default: the one that embedded the indexed cells); a backbone "
        "folder, .ckpt, or released weights (hf-hub:ORG/NAME, a timm name with tag, local-dir:PATH)",
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
    add_allow_missing(parser, "query images")


def run(args: argparse.Namespace) -> int:
    """Check the gallery path, query, then print the neighbours as JSON or a table."""
    check_output_file(args.gallery, "--gallery")
    from ssl_cyto.models.registry import WEIGHTLESS_BACKBONES, pretrained_tag, random_weights_note

    released = bool(args.model) and pretrained_tag(args.model) is not None
    if released:
        from ssl_cyto.models import hub  # torch-free: a name that cannot be had stops within seconds

        hub.resolve(args.model)  # fetched (or refused in one line) before any work
    from ssl_cyto.embedding.model_spec import is_model_name
    from ssl_cyto.retrieval.search import format_table, query

    if args.model and is_model_name(args.model) and not released and args.model not in WEIGHTLESS_BACKBONES:
        note(random_weights_note(args.model, args.seed))
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
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"skipped query {r['query']}: {r['error']}", file=sys.stderr)
    if args.gallery and len(failed) < len(results):
        print(f"wrote {args.gallery}", file=sys.stderr)
    return report_missing(len(failed), len(args.images), "query images", "above", args.allow_missing)
