"""``ssl-cyto data agreement PATH [--json]``: rater agreement (accuracy, Cohen's kappa) from annotations.dat."""

from __future__ import annotations

import argparse

from ssl_cyto.cli.exit import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data agreement``."""
    parser.add_argument("path", help="the AML-Cytomorphology_LMU folder, or its annotations.dat")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Compute the agreement and print it as a table (or JSON)."""
    from ssl_cyto.evaluation.annotation_agreement import agreement, agreement_json, format_agreement
    from ssl_cyto.formats.errors import InputError

    res = agreement(args.path)
    if res["reannotated"] == 0:
        raise InputError(f"{res['file']}: no re-annotated cells (columns 3 and 4 are all nan)")
    print(agreement_json(res) if args.json else format_agreement(res))
    return EXIT_OK
