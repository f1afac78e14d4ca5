"""``ssl-cyto export CKPT --out DIR``: the backbone of a training checkpoint, with its ``model.json``;
``--format timm`` writes a folder timm and the Hugging Face hub load (:mod:`ssl_cyto.training.timm_export`)."""

from __future__ import annotations

import argparse

from ssl_cyto.cli.checks import check_output_dir
from ssl_cyto.cli.exit import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="training checkpoint, e.g. runs/smoke_simclr/checkpoints/last.ckpt")
    parser.add_argument("--out", required=True, help="output folder (weights.pt + model.json)")
    parser.add_argument(
        "--format",
        choices=("ssl_cyto", "timm"),
        default="ssl_cyto",
        help="ssl_cyto (weights.pt + model.json, default) or timm (config.json + model.safetensors + "
        'README.md model card; timm.create_model("local-dir:OUT", pretrained=True) loads it)',
    )
    parser.add_argument("--probe-report", metavar="JSON", help="probe report whose figures go into the model card")
    parser.add_argument("--push", metavar="ORG/NAME", help="with --format timm: upload to this hub repository")


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    from ssl_cyto.formats.errors import InputError
    from ssl_cyto.formats.model_json import read_model_json

    if args.push and args.format != "timm":
        raise InputError("--push needs --format timm (the hub takes timm's folder)")
    if args.format == "timm":
        from ssl_cyto.training.timm_export import export_timm, push_folder

        out = export_timm(args.ckpt, args.out, args.probe_report)
        meta = read_model_json(out)
        print(f"exported {meta.get('method')} {meta['architecture']} in timm's format to {out} (model card README.md)")
        if args.push:
            push_folder(out, args.push)
        return EXIT_OK
    from ssl_cyto.training.export import export_checkpoint

    out = export_checkpoint(args.ckpt, args.out)
    meta = read_model_json(out)
    print(
        f"exported {meta.get('method')} {meta['architecture']} (dim {meta['embed_dim']}, "
        f"input {meta['input_size']} px, sha256 {meta['weights_sha256'][:12]}) to {out}"
    )
    return EXIT_OK
