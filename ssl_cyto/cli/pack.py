"""``ssl-cyto pack --catalog catalog.parquet --out shards/``: WebDataset shards (resumable), or ``--verify``.

An interrupted pack resumes when the same command is run again (:data:`RESUME_HINT`).
"""

from __future__ import annotations

import argparse
import sys

from ssl_cyto.cli.checks import check_output_dir
from ssl_cyto.cli.exit import EXIT_BAD_INPUT, EXIT_OK

RESUME_HINT = "rerun the same command to resume the pack"
SHOWN_SKIPPED = 10
SIZE_WARNING = "image(s) with a side under 16 px or over 4096 px (packed; probably not single cells)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ssl-cyto pack``."""
    # standard library only, so --help stays fast
    from ssl_cyto.formats.shard_index import DEFAULT_SHARD_SIZE, IMAGE_FORMATS

    parser.add_argument("--catalog", help="catalog.parquet (from `ssl-cyto data scan`) or an image folder")
    parser.add_argument("--out", help="shard folder to write (rerun with the same options to resume)")
    parser.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"cells per shard (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one shard each (default 1)")
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize the shorter side to S px (default: keep sizes)"
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=IMAGE_FORMATS,
        default="png",
        help="encoding for re-encoded images (default png; RGB JPEGs pass through unless resized)",
    )
    parser.add_argument(
        "--um-per-px",
        nargs="+",
        metavar="SOURCE=X",
        default=None,
        help="physical pixel size per source (overrides the catalog), e.g. aml-lmu=0.1 bm-mll=0.1",
    )
    parser.add_argument(
        "--target-um-per-px",
        type=float,
        default=None,
        help="resample cells of known scale to this pixel size",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    parser.add_argument(
        "--verify", metavar="SHARD_DIR", help="check a packed folder (counts, sha256) and exit"
    )
    parser.add_argument("--decode", action="store_true", help="with --verify: also decode every image")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _verify(args: argparse.Namespace) -> int:
    from ssl_cyto.data.verification import verify

    report = verify(args.verify, decode=args.decode, progress=not args.quiet)
    odd = report.get("odd_size", [])
    if odd:
        print(f"warning: {len(odd)} {SIZE_WARNING}, e.g. {odd[0]}", file=sys.stderr)
    if report["ok"]:
        print(f"OK: {report['shard_dir']}: {report['shards']} shard(s), {report['cells']} cells verified")
        return EXIT_OK
    print(f"FAILED: {report['shard_dir']}: {len(report['problems'])} problem(s)", file=sys.stderr)
    for p in report["problems"]:
        print(f"  {p}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    """Pack (or verify) and print the summary; skipped cells go to stderr."""
    if args.verify:
        return _verify(args)
    from ssl_cyto.data.packing import pack, parse_um_per_px
    from ssl_cyto.formats.errors import InputError

    if not args.catalog or not args.out:
        raise InputError("ssl-cyto pack: give --catalog and --out (or --verify SHARD_DIR)")
    check_output_dir(args.out)
    index = pack(
        args.catalog,
        args.out,
        shard_size=args.shard_size,
        workers=args.workers,
        image_size=args.image_size,
        fmt=args.fmt,
        um_per_px=parse_um_per_px(args.um_per_px),
        target_um_per_px=args.target_um_per_px,
        seed=args.seed,
        progress=not args.quiet,
    )
    skipped, odd = index["skipped"], index.get("odd_size", [])
    index_path = f"{args.out.rstrip('/')}/index.json"
    print(
        f"packed {index['total_cells']} cells into {index['n_shards']} shard(s) in {args.out} "
        f"({index['total_bytes'] / 1e6:.1f} MB, {index['bytes_per_cell']} bytes/cell); "
        f"skipped {len(skipped)} of {index['total_cells'] + len(skipped)}"
        + (f' (listed in {index_path} under "skipped")' if skipped else "")
    )
    for s in skipped[:SHOWN_SKIPPED]:
        print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(skipped) > SHOWN_SKIPPED:
        print(f"  ... and {len(skipped) - SHOWN_SKIPPED} more", file=sys.stderr)
    if odd:
        print(
            f'warning: {len(odd)} {SIZE_WARNING}, listed in {index_path} under "odd_size"; e.g. '
            f"{odd[0]['path']}: {odd[0]['reason']}",
            file=sys.stderr,
        )
    return EXIT_OK
