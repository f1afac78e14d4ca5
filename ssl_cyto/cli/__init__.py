"""The ``ssl-cyto`` command line: a thin layer over the library.

One module per command (``ssl_cyto/cli/<command>.py``), each with

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` - the options, nothing else;
* ``run(args: argparse.Namespace) -> int`` - one call into the library and the printing of its
  summary; returns an exit status of :mod:`ssl_cyto.cli.exit`.

``fit`` is a LightningCLI and takes its raw arguments: ``run_raw(argv: list[str]) -> int``.

:func:`main` imports only the module of the command being run, so ``ssl-cyto --help`` and
``ssl-cyto <command> --help`` never import torch, Lightning, pandas or faiss, while the library
modules import them at the top as usual. Expected errors (:class:`ssl_cyto.formats.errors.SslCytoError`)
are one line on stderr and exit 2, Ctrl-C exits 130; ``ssl-cyto --debug <command>`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (command words) -> (module, one-line help). The order is the order of the data flow.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("data", "synth"): ("ssl_cyto.cli.synth", "write generated cells in the real dataset layouts"),
    ("data", "scan"): ("ssl_cyto.cli.scan", "list the cells of one or more sources into catalog.parquet"),
    ("data", "agreement"): (
        "ssl_cyto.cli.agreement",
        "rater agreement (accuracy, Cohen's kappa) from annotations.dat",
    ),
    ("pack",): ("ssl_cyto.cli.pack", "pack a catalog into WebDataset shards (resumable), or --verify them"),
    ("fit",): ("ssl_cyto.cli.fit", "pretrain SimCLR or DINO (LightningCLI: ssl-cyto fit --config X.yaml)"),
    ("export",): ("ssl_cyto.cli.export", "export the backbone of a checkpoint with its model.json"),
    ("embed",): ("ssl_cyto.cli.embed", "embed every cell of shards or a folder with a backbone"),
    ("index", "build"): ("ssl_cyto.cli.index", "build a FAISS index over an embedding folder"),
    ("query",): ("ssl_cyto.cli.query", "similar cells for query images or cell ids"),
    ("serve",): ("ssl_cyto.cli.serve", "similar-cell search as an HTTP API and a web page"),
    ("probe",): ("ssl_cyto.cli.probe", "linear probe, kNN and retrieval metrics against expert labels"),
    ("umap",): ("ssl_cyto.cli.umap", "2-D UMAP maps coloured by class and by source"),
    ("dedup",): ("ssl_cyto.cli.dedup", "near-duplicate cells: within and across sources and across a probe split"),
    ("demo",): ("ssl_cyto.cli.demo", "the whole pipeline end to end on generated cells or a folder"),
}

RAW_ARGV_COMMANDS = {("fit",)}
GLOBAL_FLAGS = ("--debug",)


def _top_parser() -> argparse.ArgumentParser:
    from ssl_cyto import __version__

    lines = []
    for words, (_, help_text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<16} {help_text}")
    parser = argparse.ArgumentParser(
        prog="ssl-cyto",
        description="Self-supervised learning on single-cell cytomorphology images.",
        epilog="commands:\n" + "\n".join(lines) + "\n\n'ssl-cyto COMMAND --help' describes one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="ssl-cyto [--debug] [--version] COMMAND ...",
    )
    parser.add_argument("--version", action="version", version=f"ssl-cyto {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _find_command(argv: list[str]) -> tuple[tuple[str, ...] | None, list[str]]:
    """The command words at the start of ``argv`` and the rest; (None, argv) if none match."""
    for words in COMMANDS:
        if argv[: len(words)] == list(words):
            return words, argv[len(words) :]
    return None, argv


def _group_help(group: str) -> int:
    print(f"usage: ssl-cyto {group} SUBCOMMAND ...\n\n{group} subcommands:")
    for words, (_, help_text) in COMMANDS.items():
        if words[0] == group and len(words) > 1:
            print(f"  {words[1]:<12} {help_text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ssl-cyto``; returns the process exit status (see :mod:`ssl_cyto.cli.exit`)."""
    from ssl_cyto.cli.exit import EXIT_USAGE, guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] in GLOBAL_FLAGS:
        debug = debug or argv.pop(0) == "--debug"
    words, rest = _find_command(argv)
    if words is None:
        groups = {w[0] for w in COMMANDS if len(w) > 1}
        if argv and argv[0] in groups:
            _group_help(argv[0])
            if argv[1:2] and argv[1] in ("-h", "--help"):
                return 0
            if argv[1:]:
                print(f"ssl-cyto {argv[0]}: unknown subcommand {argv[1]!r}", file=sys.stderr)
            return EXIT_USAGE
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return EXIT_USAGE
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            parser.error(f"unknown command {unknown[0]!r}; the commands are listed by 'ssl-cyto --help'")
        parser.print_help()
        return EXIT_USAGE
    module_name, help_text = COMMANDS[words]
    module = importlib.import_module(module_name)
    if words in RAW_ARGV_COMMANDS:
        return guarded(lambda: module.run_raw(rest), debug=debug, resume_hint=getattr(module, "RESUME_HINT", None))
    parser = argparse.ArgumentParser(prog="ssl-cyto " + " ".join(words), description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return guarded(lambda: module.run(args), debug=debug, resume_hint=getattr(module, "RESUME_HINT", None))


if __name__ == "__main__":
    sys.exit(main())
