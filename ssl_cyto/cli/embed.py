"""``ssl-cyto embed``: embed every cell of shards or a folder with a backbone (:func:`ssl_cyto.embedding.embed`)."""

from __future__ import annotations

import argparse
import sys

from ssl_cyto.cli.checks import add_allow_missing, check_output_dir, note, report_missing

RESUME_HINT = "rerun the same command to resume the embedding"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto embed``."""
    parser.add_argument(
        "--model",
        help="backbone folder, its model.json, a .ckpt, released weights (timm name with tag such as "
        "resnet18.a1_in1k, hf-hub:ORG/NAME[@REVISION], local-dir:PATH; fetched into the Hugging Face cache), "
        "or a timm/tiny_cnn name (seeded random weights, or --weights FILE)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="local weights file (safetensors or a torch.save'd state_dict) for a --model given by name",
    )
    parser.add_argument(
        "--trust-weights",
        action="store_true",
        help="allow a --weights pickle that torch.load(weights_only=True) refuses (it can run code)",
    )
    parser.add_argument(
        "--data", help="shard folder/pattern, catalog.parquet, image folder or synth:<layout>"
    )
    parser.add_argument(
        "--part",
        metavar="I/N",
        help="embed only part I of N (1-based; e.g. one task of a SLURM array); merge with --merge",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="PART_DIR",
        help="merge the N part folders of one --part run into --out (same rows and order as one run)",
    )
    parser.add_argument("--out", required=True, help="embedding folder to write (EMB_DIR)")
    parser.add_argument("--batch-size", type=int, default=64, help="cells per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading workers (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--limit", type=int, help="embed only the first N cells (loader order)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of random weights for a model name (default 0)"
    )
    parser.add_argument("--input-size", type=int, help="input size for a model given by name")
    parser.add_argument(
        "--chunk-batches", type=int, default=50, help="batches per resumable partial chunk (default 50)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs/partial results of another model or data"
    )
    add_allow_missing(parser)


def run(args: argparse.Namespace) -> int:
    """Check the output, embed, then print the summary: N of M cells, what was not embedded and why."""
    from ssl_cyto.models.registry import WEIGHTLESS_BACKBONES, pretrained_tag, random_weights_note

    check_output_dir(args.out)
    if args.merge:
        from ssl_cyto.embedding.parts import merge_parts

        out = merge_parts(args.merge, args.out)
        print(f"merged {len(args.merge)} parts into {out}")
        return 0
    if not args.model or not args.data:
        from ssl_cyto.formats.errors import InputError

        raise InputError("embed needs --model and --data (or --merge PART_DIR... --out DIR)")
    released = pretrained_tag(args.model) is not None and args.weights is None
    if released:
        from ssl_cyto.models import hub  # torch-free: a name that cannot be had stops within seconds

        hub.resolve(args.model)  # fetched (or refused in one line) before any work
    from ssl_cyto.embedding import embed
    from ssl_cyto.embedding.model_spec import is_model_name
    from ssl_cyto.formats.embeddings import read_embed_json

    plain_name = is_model_name(args.model) and not released and args.weights is None
    if plain_name and args.model not in WEIGHTLESS_BACKBONES:
        note(random_weights_note(args.model, args.seed))
    out = embed(
        args.model,
        args.data,
        args.out,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        limit=args.limit,
        seed=args.seed,
        input_size=args.input_size,
        chunk_batches=args.chunk_batches,
        overwrite=args.overwrite,
        weights=args.weights,
        trust_weights=args.trust_weights,
        part=args.part,
    )
    info = read_embed_json(out)
    c = info["counts"]
    of = f" of {c['expected']}" if c.get("expected") is not None else ""
    arch = info["model"].get("architecture")
    random = (
        " (random weights)" if info["model"].get("random_init") and arch not in WEIGHTLESS_BACKBONES else ""
    )
    print(
        f"wrote {out}: {c['cells']}{of} cells x {c['dim']} dims{random} ({c['embedded_this_run']} embedded "
        f"now, {c['resumed_from_chunks']} resumed) in {info['timing']['seconds']:.1f} s"
    )
    if c.get("odd_size"):
        first = info.get("odd_size", [{}])[0]
        print(
            f"warning: {c['odd_size']} image(s) with a side under 16 px or over 4096 px were embedded "
            f'(probably not single cells; listed in {out}/embed.json under "odd_size"), e.g. '
            f"{first.get('cell_id')}: {first.get('reason')}",
            file=sys.stderr,
        )
    missing = int(c.get("unreadable_or_missing") or 0)
    listed = f"{out}/{c['missing_list']}" if c.get("missing_list") else None
    return report_missing(missing, c.get("expected"), "cells", listed, args.allow_missing, done="embedded")
