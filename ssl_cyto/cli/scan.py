"""``ssl-cyto data scan SOURCE=PATH ... --out catalog.parquet``: list the cells of sources into a catalog.

::

    ssl-cyto data scan aml-lmu=/data/AML-Cytomorphology_LMU bm-mll=/data/BM folder:pbc=/data/pbc \\
        --out catalog.parquet [--problems problems.txt] [--hash] [--no-verify]
"""

from __future__ import annotations

import argparse

from ssl_cyto.cli.checks import check_output_file
from ssl_cyto.cli.exit import EXIT_OK

SHOWN_PROBLEMS = 5  # per source; --problems FILE writes them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data scan``."""
    parser.add_argument(
        "specs",
        nargs="+",
        metavar="SOURCE=PATH",
        help="SOURCE: aml-lmu, bm-mll, folder or folder:NAME; PATH: the dataset folder as downloaded",
    )
    parser.add_argument("--out", required=True, help="catalog Parquet file to write")
    parser.add_argument("--problems", default=None, help="write every problem line to this file")
    parser.add_argument(
        "--hash", action="store_true", help="compute the SHA-256 of every file (slow on 190k)"
    )
    parser.add_argument("--no-verify", action="store_true", help="do not hash files listed in manifest.csv")


def run(args: argparse.Namespace) -> int:
    """Check the outputs, scan, write the catalog, print the counts and the problems."""
    check_output_file(args.out)
    check_output_file(args.problems, "--problems")
    from pathlib import Path

    from ssl_cyto.data.scanning import counts_table, parse_spec, scan_sources
    from ssl_cyto.formats.catalog import write_catalog

    specs = [parse_spec(s) for s in args.specs]
    df, problems = scan_sources(specs, verify=not args.no_verify, hash_all=args.hash, progress=True)
    write_catalog(df, args.out)
    print(counts_table(df))
    total = sum(len(v) for v in problems.values())
    print(f"\nproblems: {total}")
    for name, lines in problems.items():
        if lines:
            print(f"  {name}: {len(lines)}")
            for line in lines[:SHOWN_PROBLEMS]:
                print(f"    {line}")
            if len(lines) > SHOWN_PROBLEMS:
                print(
                    f"    ... {len(lines) - SHOWN_PROBLEMS} more"
                    + ("" if args.problems else " (write all with --problems FILE)")
                )
    if args.problems:
        Path(args.problems).parent.mkdir(parents=True, exist_ok=True)
        with open(args.problems, "w", encoding="utf-8") as fh:
            for name, lines in problems.items():
                for line in lines:
                    fh.write(f"{name}\t{line}\n")
        print(f"all problems written to {args.problems}")
    print(f"wrote {len(df)} cells to {args.out}")
    return EXIT_OK
