"""``ssl-cyto probe``: linear probe, kNN and retrieval metrics against expert labels.

The library call is :func:`ssl_cyto.evaluation.probing.probe`; this module parses the options and
prints the report's path.
"""

from __future__ import annotations

import argparse

from ssl_cyto.cli.exit import EXIT_OK

# as ssl_cyto.evaluation.protocol and ssl_cyto.data.vocabulary.MIN_CELLS_TO_SCORE (not imported here:
# ``--help`` stays light; tests/cli/test_probe_cli.py checks they agree)
PROTOCOLS = ("holdout20", "cv5", "dinobloom")
FAST_C = 0.1
MIN_CELLS = 50


def parse_baseline(text: str) -> tuple[str, str]:
    """``NAME=SPEC`` of ``--baseline`` -> ``(name, spec)``: an embedding folder or a ``--model`` spec."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--baseline takes NAME=EMB_DIR or NAME=MODEL, got {text!r}")
    return name, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto probe``."""
    parser.add_argument("emb_dir", metavar="EMB_DIR", help="embedding folder written by `ssl-cyto embed`")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="holdout20",
        help="holdout20: seeded stratified 80/20 hold-out (this project's); cv5: stratified 5-fold "
        "(as Matek 2021); dinobloom: DinoBloom's published evaluation (their fixed BM-MLL test split, "
        "their 5-fold elsewhere, their classifiers)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"fixed C={FAST_C}, 200 bootstrap replicates, no label-efficiency runs",
    )
    parser.add_argument(
        "--baselines",
        choices=("auto", "none"),
        default="auto",
        help="auto: embed (or reuse) random-weights and colour-histogram baselines in EMB_DIR/baselines/",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        type=parse_baseline,
        default=[],
        metavar="NAME=SPEC",
        help="an extra (or overriding: random=..., colour=...) baseline: an embedding folder of the same cells, "
        "or a --model spec (e.g. dinobloom=hf-hub:1aurent/vit_small_patch14_224.dinobloom) embedded on "
        "EMB_DIR's cells into EMB_DIR/baselines/ (cached by its weights' sha256)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of split, validation part, subsets and bootstrap"
    )
    parser.add_argument(
        "--min-cells",
        type=int,
        default=None,
        help=f"classes with fewer labelled cells are not scored (default {MIN_CELLS}; "
        "with --protocol dinobloom: 1, no minimum)",
    )
    parser.add_argument(
        "--n-boot", type=int, default=None, help="bootstrap replicates (default 1000; --fast 200)"
    )
    parser.add_argument("--out", default=None, help="output folder (default EMB_DIR/probe)")
    parser.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="skip the check of test cells for near-duplicates among the training cells (it hashes the "
        "images, about 0.03 s each; `ssl-cyto dedup` lists the pairs)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ssl-cyto probe``: print the report's path."""
    from ssl_cyto.evaluation.model_baseline import baseline_folder
    from ssl_cyto.evaluation.probing import probe

    args.baseline = [(name, str(baseline_folder(args.emb_dir, name, spec))) for name, spec in args.baseline]
    result = probe(
        args.emb_dir,
        protocol=args.protocol,
        fast=args.fast,
        baselines=args.baselines,
        baseline_dirs=dict(args.baseline),
        seed=args.seed,
        out=args.out,
        min_cells=args.min_cells,
        n_boot=args.n_boot,
        near_duplicates=not args.no_near_duplicates,
    )
    print(result["report"])
    return EXIT_OK
