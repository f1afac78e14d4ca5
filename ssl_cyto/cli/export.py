"""``ssl-cyto export CKPT --out DIR``: the backbone of a training checkpoint, with its ``model.json``."""

from __future__ import annotations

import argparse

from ssl_cyto.cli.checks import check_output_dir
from ssl_cyto.cli.exit import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="training checkpoint, e.g. runs/smoke_simclr/checkpoints/last.ckpt")
    parser.add_argument("--out", required=True, help="output folder (weights.pt + model.json)")


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    from ssl_cyto.formats.model_json import read_model_json
    from ssl_cyto.training.export import export_checkpoint

    out = export_checkpoint(args.ckpt, args.out)
    meta = read_model_json(out)
    print(
        f"exported {meta.get('method')} {meta['architecture']} (dim {meta['embed_dim']}, "
        f"input {meta['input_size']} px, sha256 {meta['weights_sha256'][:12]}) to {out}"
    )
    return EXIT_OK
