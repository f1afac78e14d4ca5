"""``ssl-cyto serve``: similar-cell search as an HTTP API and a web page (:mod:`ssl_cyto.serve`)."""

from __future__ import annotations

import argparse
import os

from ssl_cyto.cli.exit import EXIT_OK

TOKEN_ENV = "SSL_CYTO_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto serve``."""
    parser.add_argument(
        "--index",
        required=True,
        metavar="EMB_DIR",
        help="embedding folder with index.faiss (`ssl-cyto index build`)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="backbone the cells were embedded with, when kept outside EMB_DIR (a backbone folder, "
        "model.json, .ckpt, or released weights such as hf-hub:ORG/NAME); default: the one EMB_DIR records",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--device", default="auto", help="auto | cpu | cuda[:N] for embedding uploads (default auto)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch/FAISS threads and concurrent queries (default: the usable cores)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=25_000_000,
        help="largest upload in decoded pixels, read from the header (default 25000000)",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=20 * 1024 * 1024,
        help="largest upload in bytes (default 20971520 = 20 MiB)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"require this token on the API and the page (default: ${TOKEN_ENV} if set)",
    )


def run(args: argparse.Namespace) -> int:
    """Start the server; a start-up problem is one line on stderr (exit 2)."""
    from ssl_cyto.formats.errors import InputError
    from ssl_cyto.serve import Limits, run_server

    for name in ("max_pixels", "max_bytes", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    run_server(
        args.index,
        args.host,
        args.port,
        device=args.device,
        threads=args.threads,
        limits=Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels),
        token=token,
        model=args.model,
    )
    return EXIT_OK
