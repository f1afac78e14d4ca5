"""FAISS indexes in memory: cosine similarity, exact or approximate.

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
Files on disk (``index.faiss`` + ``index.json``) are :mod:`ssl_cyto.retrieval.index_io`'s job.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from ssl_cyto.retrieval.errors import GpuUnavailableError, RetrievalError

# FAISS's OpenMP threads spin between parallel regions by default; on a shared or oversubscribed
# machine that stalls everything (IVF-PQ training measured 48 s with spinning vs 0.8 s passive,
# 2 cores at load 13). Passive waiting costs little on a dedicated machine. Must be set before
# faiss loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import faiss  # noqa: E402

__all__ = [
    "ADD_CHUNK",
    "DEFAULTS",
    "KINDS",
    "METRIC",
    "METRIC_DETAIL",
    "GpuUnavailableError",
    "RetrievalError",
    "default_nlist",
    "default_pq_m",
    "gpu_resources",
    "make_index",
    "normalize",
    "resolve_params",
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


def gpu_resources() -> Any:
    """``faiss.StandardGpuResources()``, or a clear error when FAISS or the machine has no GPU."""
    if not hasattr(faiss, "StandardGpuResources"):
        raise GpuUnavailableError(
            "--gpu: the installed faiss has no GPU support (faiss-cpu); install faiss-gpu "
            "(`pip install 'ssl-cyto[gpu]'` or conda faiss-gpu) or drop --gpu of `ssl-cyto index build`"
        )
    if faiss.get_num_gpus() < 1:
        raise GpuUnavailableError("--gpu: faiss has GPU support but sees no GPU (check CUDA_VISIBLE_DEVICES)")
    return faiss.StandardGpuResources()


def resolve_params(kind: str, n: int, dim: int, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a ``kind`` index over ``n`` vectors of ``dim``: :data:`DEFAULTS` overridden
    by the non-None ``params``, derived defaults filled in and clipped to what the data allows.

    Raises:
        RetrievalError: an unknown kind, a parameter of another kind, or an impossible value.
    """
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


def param_notes(kind: str, n: int, params: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """One line per parameter that :func:`resolve_params` changed from what was asked (or the default).

    Said once by ``ssl-cyto index build`` and kept in ``index.json["notes"]``: a lowered ``nbits``
    changes the index's accuracy, so it is never lowered silently.
    """
    if kind not in DEFAULTS:
        return []
    asked = dict(DEFAULTS[kind])
    asked.update({k: v for k, v in params.items() if v is not None and k in asked})
    notes = []
    if kind == "ivfpq" and asked.get("nbits") is not None and resolved["nbits"] < int(asked["nbits"]):
        notes.append(
            f"ivfpq: nbits lowered from {asked['nbits']} to {resolved['nbits']}: {n} vectors are too few to "
            f"train 2**{asked['nbits']} PQ centroids (FAISS wants >= 39 vectors each); codes are coarser. "
            "Use `ssl-cyto index build --kind flat` or ivf for a set this small, or index more cells (--nbits sets the cap)"
        )
    if (
        kind in ("ivf", "ivfpq")
        and asked.get("nprobe") is not None
        and resolved["nprobe"] < int(asked["nprobe"])
    ):
        notes.append(
            f"{kind}: nprobe lowered from {asked['nprobe']} to {resolved['nprobe']}, the number of lists "
            "(nlist), so every list is searched; set `ssl-cyto index build --nlist` for more lists"
        )
    return notes


def set_search_params(
    index: Any, nprobe: int | None = None, ef_search: int | None = None, k_factor: float | None = None
) -> None:
    """Set the query-time knobs of an index in place (ignored where they do not apply).

    Args:
        index: a FAISS index (CPU or GPU; a refine wrapper is looked through).
        nprobe: IVF lists searched per query.
        ef_search: HNSW candidate-list size.
        k_factor: IVF-PQ re-ranking factor (the refine wrapper re-ranks ``k_factor * k`` candidates).
    """
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
    x = vectors if normalized else normalize(vectors)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    p = resolve_params(kind, n, dim, params)
    res: Any = None
    index: Any  # the FAISS index classes differ per kind
    if gpu:
        if kind == "hnsw":
            raise RetrievalError(
                "--gpu: FAISS has no GPU HNSW; use `ssl-cyto index build --kind flat/ivf/ivfpq` on the GPU or drop --gpu"
            )
        res = gpu_resources()
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
            # the lowered nbits is said once (param_notes), not as one FAISS warning per sub-quantiser
            index.pq.cp.min_points_per_centroid = max(1, min(39, n // 2 ** p["nbits"]))
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
    target: Any = index
    on_gpu = res is not None and not isinstance(index, faiss.IndexRefine)  # refine wrappers add on the CPU
    if on_gpu:
        try:
            target = faiss.index_cpu_to_gpu(res, 0, index)
        except RuntimeError as exc:
            raise RetrievalError(f"--gpu: FAISS cannot move this {kind} index to the GPU ({exc})") from exc
    bar = None
    if progress and n > ADD_CHUNK:
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
