"""FAISS indexes over an embedding folder: cosine similarity, exact or approximate.

Similarity is cosine: vectors are L2-normalised and compared by inner product
(``faiss.METRIC_INNER_PRODUCT``), so a returned score is the cosine similarity in ``[-1, 1]``
(approximately, for the PQ kind). Index kinds (Johnson, Douze & Jégou, "Billion-scale similarity
search with GPUs", IEEE TBD 2019, for FAISS itself):

* ``flat`` -- exact brute-force search (the default; fine up to a few hundred thousand cells).
* ``ivf`` -- inverted file: k-means into ``nlist`` cells, search the ``nprobe`` closest cells with
  exact distances (Sivic & Zisserman, ICCV 2003; Jégou et al., TPAMI 2011).
* ``hnsw`` -- hierarchical navigable small-world graph with ``m`` links per node, ``ef_search`` at
  query time (Malkov & Yashunin, TPAMI 2020).
* ``ivfpq`` -- inverted file with product-quantised codes (``pq_m`` sub-quantisers of ``nbits``
  bits; Jégou, Douze & Schmid, TPAMI 2011), optionally re-ranked exactly over the best
  ``refine x k`` candidates (``refine``; keeps the full vectors, so it trades memory for recall).

The defaults for the approximate kinds come from ``benchmarks/faiss_bench.py`` (see
``results/benchmarks/faiss.md``): they reach recall@10 >= 0.95 against exact search on 190k vectors.

Files: ``EMB_DIR/index.faiss`` and ``EMB_DIR/index.json`` (kind, parameters, metric, n, dim, the
model's ``weights_sha256``, the embeddings' sha256, build time). ``faiss`` is imported lazily.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULTS",
    "KINDS",
    "GpuUnavailableError",
    "RetrievalError",
    "add_arguments",
    "build_index",
    "default_nlist",
    "load_embeddings",
    "load_index",
    "main",
    "make_index",
    "normalize",
    "resolve_index_path",
    "search",
    "set_search_params",
]

KINDS = ("flat", "ivf", "hnsw", "ivfpq")
METRIC = "cosine"
METRIC_DETAIL = "inner product of L2-normalised float32 vectors (cosine similarity)"

# Defaults chosen with benchmarks/faiss_bench.py (results/benchmarks/faiss.md): recall@10 >= 0.95
# against exact search on 190k tiled real embeddings, at 384 and 2048 dimensions.
DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16},
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 64},
    "ivfpq": {"nlist": None, "nprobe": 16, "pq_m": None, "nbits": 8, "refine": 20},
}
# k-means trains on at most this many points per list (FAISS warns below 39; above 256 it subsamples).
TRAIN_POINTS_PER_LIST = 64
ADD_CHUNK = 16384


class RetrievalError(ValueError):
    """Bad embedding folder, index file or index parameters (the message says which and how to fix)."""


class GpuUnavailableError(RetrievalError):
    """``--gpu`` was asked for but the installed FAISS has no GPU support or no GPU is visible."""


def default_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ``round(sqrt(n))``, at most ``n // 39`` (at least 1).

    ``sqrt(n)`` balances the coarse search (``nlist`` centroids) against the fine search
    (``nprobe * n / nlist`` vectors); the ``n // 39`` cap keeps >= 39 training points per centroid.
    """
    return int(max(1, min(round(math.sqrt(max(n, 1))), n // 39)))


def default_pq_m(dim: int) -> int:
    """Sub-quantisers for IVF-PQ: about ``dim / 16`` (16 dimensions per 8-bit code), at least 8 for
    small ``dim`` (at most ``dim / 4``), rounded down to a divisor of ``dim``.

    384 dims -> 24 bytes per vector, 2048 -> 128 bytes (64x smaller than float32), 32 -> 8. Coarse
    codes rank candidates; the default exact re-ranking (``refine``) restores recall.
    """
    target = max(dim // 16, min(8, max(1, dim // 4)))
    for m in range(max(1, target), 0, -1):
        if dim % m == 0:
            return m
    return 1


def normalize(vectors: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """A float32, C-contiguous, L2-normalised copy of ``vectors`` (rows of norm 0 stay 0).

    Args:
        vectors: (n, d) array (any float dtype; may be a memory map).
        chunk: rows processed at a time, to bound temporary memory.
    """
    import numpy as np

    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise RetrievalError(f"expected a 2-D (n, dim) array of vectors, got shape {arr.shape}")
    out = np.empty(arr.shape, dtype=np.float32)
    for start in range(0, arr.shape[0], chunk):
        block = np.asarray(arr[start : start + chunk], dtype=np.float32)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise RetrievalError(
                f"vector row {bad} contains NaN or inf; re-embed (the model may have diverged)"
            )
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=out[start : start + chunk], where=norms > 0)
        out[start : start + chunk][(norms[:, 0] == 0)] = 0.0
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_embeddings(emb_dir: str | Path, mmap: bool = True) -> tuple[np.ndarray, dict]:
    """Read ``embeddings.npy`` and ``model.json`` of an embedding folder, checking the contract.

    Returns:
        ``(embeddings, model_meta)``; embeddings as a read-only memory map when ``mmap``.

    Raises:
        RetrievalError: a file is missing, the array is not 2-D, or its row count differs from
            ``cells.parquet``.
    """
    import numpy as np

    emb_dir = Path(emb_dir)
    emb_path = emb_dir / "embeddings.npy"
    if not emb_path.exists():
        raise RetrievalError(f"{emb_path} not found; create it with `ssl-cyto embed --out {emb_dir} ...`")
    emb = np.load(emb_path, mmap_mode="r" if mmap else None)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise RetrievalError(
            f"{emb_path}: expected a non-empty (n, dim) array, got shape {emb.shape}; re-run embed"
        )
    cells = emb_dir / "cells.parquet"
    if cells.exists():
        import pyarrow.parquet as pq

        n_rows = pq.read_metadata(cells).num_rows
        if n_rows != emb.shape[0]:
            raise RetrievalError(
                f"{emb_dir}: embeddings.npy has {emb.shape[0]} rows but cells.parquet has {n_rows}; "
                "the folder is inconsistent, re-run `ssl-cyto embed --overwrite`"
            )
    model_json = emb_dir / "model.json"
    if not model_json.exists():
        raise RetrievalError(
            f"{model_json} not found; an index must record which model made the vectors (re-run embed)"
        )
    meta = json.loads(model_json.read_text(encoding="utf-8"))
    return emb, meta


def _faiss():
    # FAISS's OpenMP threads spin between parallel regions by default; on a shared or oversubscribed
    # machine that stalls everything (IVF-PQ training measured 48 s with spinning vs 0.8 s passive,
    # 2 cores at load 13). Passive waiting costs little on a dedicated machine. Must be set before
    # the first `import faiss` loads its OpenMP runtime; an explicit user setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is a declared dependency
        raise RetrievalError(
            "faiss is not installed; `pip install 'ssl-cyto[cpu]'` (faiss-cpu) or [gpu]"
        ) from exc
    return faiss


def _gpu_resources():
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources"):
        raise GpuUnavailableError(
            "--gpu: the installed faiss has no GPU support (faiss-cpu); install faiss-gpu "
            "(`pip install 'ssl-cyto[gpu]'` or conda faiss-gpu) or drop --gpu"
        )
    if faiss.get_num_gpus() < 1:
        raise GpuUnavailableError("--gpu: faiss has GPU support but sees no GPU (check CUDA_VISIBLE_DEVICES)")
    return faiss.StandardGpuResources()


def _resolve_params(kind: str, n: int, dim: int, params: dict[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise RetrievalError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    unknown = set(params) - set(DEFAULTS[kind]) - {"seed"}
    given = {k: v for k, v in params.items() if v is not None}
    if unknown & set(given):
        raise RetrievalError(
            f"parameter(s) {sorted(unknown & set(given))} do not apply to kind {kind!r} "
            f"(it takes {sorted(DEFAULTS[kind]) or 'no parameters'})"
        )
    out = dict(DEFAULTS[kind])
    out.update({k: v for k, v in given.items() if k in out})
    if kind in ("ivf", "ivfpq"):
        if out["nlist"] is None:
            out["nlist"] = default_nlist(n)
        out["nlist"] = int(out["nlist"])
        if out["nlist"] < 1 or out["nlist"] > n:
            raise RetrievalError(f"nlist={out['nlist']} must be between 1 and the number of vectors ({n})")
        out["nprobe"] = int(min(max(1, out["nprobe"]), out["nlist"]))
    if kind == "ivfpq":
        if out["pq_m"] is None:
            out["pq_m"] = default_pq_m(dim)
        out["pq_m"] = int(out["pq_m"])
        if dim % out["pq_m"] != 0:
            raise RetrievalError(f"pq_m={out['pq_m']} must divide the embedding dimension {dim}")
        # PQ k-means wants >= 39 training points per centroid (2**nbits centroids); shrink the
        # code size on small data rather than train on too few points.
        out["nbits"] = int(min(out["nbits"], max(1, int(math.log2(max(n / 39, 2))))))
        out["refine"] = int(out["refine"] or 0)
    if kind == "hnsw":
        out["m"] = int(out["m"])
        out["ef_construction"] = int(out["ef_construction"])
        out["ef_search"] = int(out["ef_search"])
    return out


def set_search_params(
    index: Any, nprobe: int | None = None, ef_search: int | None = None, k_factor=None
) -> None:
    """Set the query-time knobs of an index in place (ignored where they do not apply).

    Args:
        index: a FAISS index (CPU or GPU; a refine wrapper is looked through).
        nprobe: IVF lists searched per query.
        ef_search: HNSW candidate-list size.
        k_factor: IVF-PQ re-ranking factor (the refine wrapper re-ranks ``k_factor * k`` candidates).
    """
    faiss = _faiss()
    base = index
    if isinstance(index, faiss.IndexRefine):
        if k_factor is not None:
            index.k_factor = float(k_factor)
        base = faiss.downcast_index(index.base_index)
    if nprobe is not None:
        try:
            faiss.extract_index_ivf(base).nprobe = int(nprobe)
        except RuntimeError:
            if hasattr(base, "nprobe"):  # GPU IVF indexes
                base.nprobe = int(nprobe)
    if ef_search is not None and hasattr(base, "hnsw"):
        base.hnsw.efSearch = int(ef_search)


def make_index(
    vectors: np.ndarray,
    kind: str = "flat",
    *,
    gpu: bool = False,
    seed: int = 0,
    progress: bool = True,
    normalized: bool = False,
    **params: Any,
) -> tuple[Any, dict[str, Any]]:
    """Build a FAISS index over ``vectors`` (cosine similarity) in memory.

    Args:
        vectors: (n, d) embeddings; L2-normalised here unless ``normalized``.
        kind: ``flat``, ``ivf``, ``hnsw`` or ``ivfpq``.
        gpu: build (and train) on the GPU via ``faiss.StandardGpuResources``; HNSW has no GPU
            implementation and is refused. The returned index is always a CPU index.
        seed: k-means seed (IVF kinds) and training-subsample seed.
        progress: show a progress bar while adding vectors.
        normalized: the vectors are already float32 and L2-normalised.
        **params: kind-specific parameters (``nlist``, ``nprobe``, ``m``, ``ef_construction``,
            ``ef_search``, ``pq_m``, ``nbits``, ``refine``); unset ones take :data:`DEFAULTS`.

    Returns:
        ``(index, resolved_params)``.
    """
    import numpy as np

    faiss = _faiss()
    x = vectors if normalized else normalize(vectors)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    p = _resolve_params(kind, n, dim, params)
    res = None
    if gpu:
        if kind == "hnsw":
            raise RetrievalError(
                "--gpu: FAISS has no GPU HNSW; use --kind flat/ivf/ivfpq on the GPU or drop --gpu"
            )
        res = _gpu_resources()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, p["m"], ip)
        index.hnsw.efConstruction = p["ef_construction"]
        index.hnsw.efSearch = p["ef_search"]
    else:
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, p["nlist"], ip)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, p["nlist"], p["pq_m"], p["nbits"], ip)
        index.cp.seed = int(seed)
        index.nprobe = p["nprobe"]
        max_train = max(
            p["nlist"] * TRAIN_POINTS_PER_LIST, 2 ** p.get("nbits", 0) * 39 if kind == "ivfpq" else 0
        )
        if n > max_train:
            rng = np.random.default_rng(seed)
            train = x[np.sort(rng.choice(n, size=max_train, replace=False))]
        else:
            train = x
        if res is not None:
            try:
                gidx = faiss.index_cpu_to_gpu(res, 0, index)
                gidx.train(train)
            except RuntimeError as exc:  # e.g. a pq_m the GPU IVF-PQ kernels do not support
                raise RetrievalError(
                    f"--gpu: FAISS cannot train this {kind} index on the GPU ({exc})"
                ) from exc
            index = faiss.index_gpu_to_cpu(gidx)
        else:
            index.train(train)
        if kind == "ivfpq" and p["refine"] > 0:
            base = index
            index = faiss.IndexRefineFlat(base)
            index.k_factor = float(p["refine"])
    target = index
    on_gpu = res is not None and not isinstance(index, faiss.IndexRefine)  # refine wrappers add on the CPU
    if on_gpu:
        try:
            target = faiss.index_cpu_to_gpu(res, 0, index)
        except RuntimeError as exc:
            raise RetrievalError(f"--gpu: FAISS cannot move this {kind} index to the GPU ({exc})") from exc
    bar = None
    if progress and n > ADD_CHUNK:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"index add ({kind})", unit="vec", file=sys.stderr)
    for start in range(0, n, ADD_CHUNK):
        target.add(x[start : start + ADD_CHUNK])
        if bar is not None:
            bar.update(min(ADD_CHUNK, n - start))
    if bar is not None:
        bar.close()
    if on_gpu:
        index = faiss.index_gpu_to_cpu(target)
    set_search_params(
        index, nprobe=p.get("nprobe"), ef_search=p.get("ef_search"), k_factor=p.get("refine") or None
    )
    return index, p


def resolve_index_path(path: str | Path) -> tuple[Path, Path]:
    """``(index.faiss, index.json)`` for an embedding folder, an ``.faiss`` file or its ``.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / "index.faiss"
    elif path.suffix == ".json":
        path = path.with_suffix(".faiss")
    meta = path.with_suffix(".json")
    if not path.exists():
        raise RetrievalError(
            f"{path} not found; build it with `ssl-cyto index build {path.parent}` (or pass the right folder)"
        )
    if not meta.exists():
        raise RetrievalError(
            f"{meta} not found beside {path.name}; rebuild the index with `ssl-cyto index build`"
        )
    return path, meta


def build_index(
    emb_dir: str | Path,
    kind: str = "flat",
    *,
    gpu: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    **params: Any,
) -> Path:
    """Build a FAISS index over ``EMB_DIR/embeddings.npy`` and write ``index.faiss`` + ``index.json``.

    Args:
        emb_dir: an embedding folder written by :func:`ssl_cyto.embed.embed`.
        kind: ``flat`` (exact, default), ``ivf``, ``hnsw`` or ``ivfpq``.
        gpu: build on the GPU (FAISS with GPU support required; clear error otherwise).
        out: index file to write (default ``EMB_DIR/index.faiss``); its metadata goes beside it
            with the suffix ``.json``.
        seed: k-means / subsampling seed.
        progress: progress bar while adding.
        **params: see :func:`make_index`.

    Returns:
        The path of the written ``.faiss`` file.
    """
    faiss = _faiss()
    emb_dir = Path(emb_dir)
    emb, model_meta = load_embeddings(emb_dir)
    t0 = time.perf_counter()
    x = normalize(emb)
    zero = int((~(x.any(axis=1))).sum())
    index, p = make_index(x, kind, gpu=gpu, seed=seed, progress=progress, normalized=True, **params)
    seconds = time.perf_counter() - t0
    out_path = Path(out) if out is not None else emb_dir / "index.faiss"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(out_path)
    meta = {
        "kind": kind,
        "params": p,
        "seed": seed,
        "metric": METRIC,
        "metric_detail": METRIC_DETAIL,
        "n": int(index.ntotal),
        "dim": int(x.shape[1]),
        "zero_vectors": zero,
        "weights_sha256": model_meta.get("weights_sha256"),
        "architecture": model_meta.get("architecture"),
        "embeddings": "embeddings.npy",
        "embeddings_sha256": _sha256_file(emb_dir / "embeddings.npy"),
        "emb_dir": str(emb_dir.resolve()),
        "index_bytes": out_path.stat().st_size,
        "built_on_gpu": bool(gpu),
        "build_seconds": round(seconds, 3),
        "faiss_version": getattr(faiss, "__version__", "unknown"),
        "created": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_path


def load_index(
    path: str | Path, nprobe: int | None = None, ef_search: int | None = None, gpu: bool = False
) -> tuple[Any, dict]:
    """Read an index and its metadata; query-time knobs come from ``index.json`` unless overridden.

    Args:
        path: an embedding folder (``index.faiss`` inside), the ``.faiss`` file or its ``.json``.
        nprobe: override the IVF ``nprobe`` recorded at build time.
        ef_search: override the HNSW ``efSearch``.
        gpu: move the index to the GPU (flat / IVF kinds).

    Returns:
        ``(faiss index, meta dict)``; ``meta["index_path"]`` holds the resolved ``.faiss`` path.
    """
    faiss = _faiss()
    index_path, meta_path = resolve_index_path(path)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    index = faiss.read_index(str(index_path))
    if index.ntotal != meta.get("n"):
        raise RetrievalError(
            f"{index_path} holds {index.ntotal} vectors but {meta_path.name} says {meta.get('n')}; rebuild the index"
        )
    p = meta.get("params", {})
    set_search_params(
        index,
        nprobe=nprobe if nprobe is not None else p.get("nprobe"),
        ef_search=ef_search if ef_search is not None else p.get("ef_search"),
        k_factor=p.get("refine") or None,
    )
    if gpu:
        if meta.get("kind") == "hnsw":
            raise RetrievalError("--gpu: FAISS has no GPU HNSW; load this index on the CPU")
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    meta["index_path"] = str(index_path)
    return index, meta


def search(index: Any, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar database vectors for each query vector.

    Args:
        index: a FAISS index built by :func:`make_index` / :func:`build_index`.
        vectors: (q, d) or (d,) query vectors (L2-normalised here).
        k: neighbours per query; capped at the index size.

    Returns:
        ``(similarities, ids)``, both (q, k'): cosine similarities (descending) and row numbers
        into ``embeddings.npy`` / ``cells.parquet``; ``-1`` ids mark missing neighbours (approximate
        indexes can return fewer than ``k``).
    """
    if k < 1:
        raise RetrievalError(f"k must be >= 1, got {k}")
    x = normalize(vectors)
    if x.shape[1] != index.d:
        raise RetrievalError(
            f"query vectors have dimension {x.shape[1]} but the index has {index.d}; "
            "embed the queries with the model that built the index"
        )
    k = min(int(k), int(index.ntotal))
    sims, ids = index.search(x, k)
    return sims, ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto index build``."""
    parser.add_argument("emb_dir", help="embedding folder (embeddings.npy, cells.parquet, model.json)")
    parser.add_argument("--kind", choices=KINDS, default="flat", help="index kind (default: flat = exact)")
    parser.add_argument("--gpu", action="store_true", help="build on the GPU (needs faiss with GPU support)")
    parser.add_argument("--nlist", type=int, help="IVF lists (ivf, ivfpq; default round(sqrt(n)))")
    parser.add_argument(
        "--nprobe", type=int, help=f"IVF lists searched per query (default {DEFAULTS['ivf']['nprobe']})"
    )
    parser.add_argument("--m", type=int, help=f"HNSW links per node (default {DEFAULTS['hnsw']['m']})")
    parser.add_argument(
        "--ef-construction",
        type=int,
        help=f"HNSW build candidate list (default {DEFAULTS['hnsw']['ef_construction']})",
    )
    parser.add_argument(
        "--ef-search", type=int, help=f"HNSW search candidate list (default {DEFAULTS['hnsw']['ef_search']})"
    )
    parser.add_argument(
        "--pq-m", type=int, help="IVF-PQ sub-quantisers (must divide dim; default about dim/16)"
    )
    parser.add_argument("--nbits", type=int, help="IVF-PQ bits per code (default 8)")
    parser.add_argument(
        "--refine",
        type=int,
        help=f"IVF-PQ exact re-ranking of refine*k candidates, 0 = off (default {DEFAULTS['ivfpq']['refine']})",
    )
    parser.add_argument("--seed", type=int, default=0, help="k-means / subsampling seed")
    parser.add_argument("--out", help="index file (default EMB_DIR/index.faiss; metadata beside it as .json)")


def main(args: argparse.Namespace) -> int:
    """``ssl-cyto index build``: print where the index went; user errors -> message + exit 2."""
    names = ("nlist", "nprobe", "m", "ef_construction", "ef_search", "pq_m", "nbits", "refine")
    params = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    try:
        path = build_index(args.emb_dir, args.kind, gpu=args.gpu, out=args.out, seed=args.seed, **params)
    except (RetrievalError, FileNotFoundError) as exc:
        print(f"ssl-cyto index build: error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    print(
        f"wrote {path} ({meta['kind']}, {meta['n']} x {meta['dim']}, {meta['params']}, "
        f"{meta['build_seconds']:.1f} s) and {path.with_suffix('.json').name}"
    )
    return 0
