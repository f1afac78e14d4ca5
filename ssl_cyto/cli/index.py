"""``ssl-cyto index build``: a FAISS index over an embedding folder (:func:`ssl_cyto.retrieval.build_index`).

The kinds and defaults named in the help are those of :mod:`ssl_cyto.retrieval.faiss_index`
(``KINDS``, ``DEFAULTS``), written out here so that ``--help`` does not import faiss; a test keeps
the two equal.
"""

from __future__ import annotations

import argparse

from ssl_cyto.cli.checks import check_output_dir, check_output_file, note
from ssl_cyto.cli.exit import EXIT_OK

KINDS = ("flat", "ivf", "hnsw", "ivfpq")
DEFAULT_NPROBE = 16
DEFAULT_HNSW = {"m": 32, "ef_construction": 80, "ef_search": 64}
DEFAULT_REFINE = 20
PARAM_NAMES = ("nlist", "nprobe", "m", "ef_construction", "ef_search", "pq_m", "nbits", "refine")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto index build``."""
    parser.add_argument("emb_dir", help="embedding folder (embeddings.npy, cells.parquet, model.json)")
    parser.add_argument("--kind", choices=KINDS, default="flat", help="index kind (default: flat = exact)")
    parser.add_argument("--gpu", action="store_true", help="build on the GPU (needs faiss with GPU support)")
    parser.add_argument("--nlist", type=int, help="IVF lists (ivf, ivfpq; default round(sqrt(n)))")
    parser.add_argument("--nprobe", type=int, help=f"IVF lists searched per query (default {DEFAULT_NPROBE})")
    parser.add_argument("--m", type=int, help=f"HNSW links per node (default {DEFAULT_HNSW['m']})")
    parser.add_argument(
        "--ef-construction",
        type=int,
        help=f"HNSW build candidate list (default {DEFAULT_HNSW['ef_construction']})",
    )
    parser.add_argument(
        "--ef-search", type=int, help=f"HNSW search candidate list (default {DEFAULT_HNSW['ef_search']})"
    )
    parser.add_argument(
        "--pq-m", type=int, help="IVF-PQ sub-quantisers (must divide dim; default about dim/16)"
    )
    parser.add_argument("--nbits", type=int, help="IVF-PQ bits per code (default 8)")
    parser.add_argument(
        "--refine",
        type=int,
        help=f"IVF-PQ exact re-ranking of refine*k candidates, 0 = off (default {DEFAULT_REFINE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="k-means / subsampling seed")
    parser.add_argument("--out", help="index file (default EMB_DIR/index.faiss; metadata beside it as .json)")


def run(args: argparse.Namespace) -> int:
    """Build the index and print where it went."""
    from ssl_cyto.retrieval.index_io import build_index, read_index_meta

    params = {k: getattr(args, k) for k in PARAM_NAMES if getattr(args, k, None) is not None}
    if args.out is not None:
        check_output_file(args.out)
    else:
        check_output_dir(args.emb_dir, "EMB_DIR")
    path = build_index(args.emb_dir, args.kind, gpu=args.gpu, out=args.out, seed=args.seed, **params)
    meta = read_index_meta(path)
    print(
        f"wrote {path} ({meta['kind']}, {meta['n']} x {meta['dim']}, {meta['params']}, "
        f"{meta['build_seconds']:.1f} s) and {path.with_suffix('.json').name}"
    )
    for line in meta.get("notes", []):
        note(line)
    return EXIT_OK
