"""The ``ssl-cyto`` entry point.

Every subcommand lives in its own module, which exposes two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None``
* ``main(args: argparse.Namespace) -> int``

Command modules import only the standard library at module level (heavy libraries are imported
inside ``main``), so building the parser for ``--help`` is instant. ``fit`` is the exception to the
argparse convention: it is a ``LightningCLI`` and receives the raw remaining arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (command words) -> (module, one-line help). Order is the order of the data flow.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("data", "synth"): ("ssl_cyto.data.synth", "write generated cells in the real dataset layouts"),
    ("data", "scan"): ("ssl_cyto.data.catalog", "list the cells of one or more sources into catalog.parquet"),
    ("data", "agreement"): (
        "ssl_cyto.data.agreement",
        "rater agreement (accuracy, Cohen's kappa) from annotations.dat",
    ),
    ("pack",): (
        "ssl_cyto.data.shards",
        "pack a catalog into WebDataset shards (resumable), or --verify them",
    ),
    ("fit",): (
        "ssl_cyto.fit",
        "pretrain SimCLR or DINO (LightningCLI: ssl-cyto fit --config configs/X.yaml)",
    ),
    ("export",): ("ssl_cyto.export", "export the backbone of a checkpoint with its model.json"),
    ("embed",): ("ssl_cyto.embed", "embed every cell of shards or a folder with a backbone"),
    ("index", "build"): ("ssl_cyto.retrieval.index", "build a FAISS index over an embedding folder"),
    ("query",): ("ssl_cyto.retrieval.query", "similar cells for query images or cell ids"),
    ("probe",): (
        "ssl_cyto.evaluation.probe",
        "linear probe, kNN and retrieval metrics against expert labels",
    ),
    ("umap",): ("ssl_cyto.evaluation.umap", "2-D UMAP maps coloured by class and by source"),
    ("demo",): ("ssl_cyto.demo", "the whole pipeline end to end on generated cells or a folder"),
}

RAW_ARGV_COMMANDS = {("fit",)}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-cyto",
        description="Self-supervised learning on single-cell cytomorphology images.",
    )
    from ssl_cyto import __version__

    parser.add_argument("--version", action="version", version=f"ssl-cyto {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, (module_name, help_text) in COMMANDS.items():
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} subcommands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
                group.set_defaults(_group_parser=group)
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if words in RAW_ARGV_COMMANDS:
            continue
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ssl-cyto``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for words, (module_name, _) in COMMANDS.items():
        if words in RAW_ARGV_COMMANDS and argv[: len(words)] == list(words):
            return int(importlib.import_module(module_name).main(argv[len(words) :]) or 0)
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        group = getattr(args, "_group_parser", None)
        (group or parser).print_help()
        return 2
    module = importlib.import_module(args._module)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
