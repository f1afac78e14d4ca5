"""A FAISS index of an embedding folder on disk: the one reader and writer of ``index.faiss`` + its metadata.

The metadata file is ``index.faiss.json`` (:data:`INDEX_META`; for an index written elsewhere,
``NAME.faiss`` + ``NAME.faiss.json``). It was ``index.json`` before, the name of the shard folder's
index too; an index with only the old ``index.json`` / ``NAME.json`` beside it is still read.
The metadata records the kind, the resolved parameters, the metric, ``n`` and ``dim``, the
model's ``weights_sha256`` and ``architecture``, the sha256 of ``embeddings.npy``, the embedding
folder (``emb_dir``), the file size, the build time and the FAISS version. Query-time knobs
(``nprobe``, ``ef_search``, the IVF-PQ re-ranking factor) are restored from it by :func:`load_index`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssl_cyto.formats.embeddings import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    INDEX_META,
    EmbeddingFolder,
    EmbeddingFolderError,
    MissingEmbeddingsError,
    read_embedding_folder,
)
from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.formats.shard_index import is_shard_dir
from ssl_cyto.retrieval.errors import GpuUnavailableError, RetrievalError
from ssl_cyto.retrieval.faiss_index import (  # faiss comes with the OpenMP setting made there
    METRIC,
    METRIC_DETAIL,
    faiss,
    gpu_resources,
    make_index,
    normalize,
    param_notes,
    set_search_params,
)

__all__ = [
    "INDEX_META",
    "GpuUnavailableError",
    "RetrievalError",
    "build_index",
    "load_index",
    "read_folder",
    "read_index_meta",
    "resolve_index_path",
    "search",
]


"""The FAISS index's metadata beside ``index.faiss`` (formerly ``index.json``)."""


def meta_path_for(index_path: Path) -> Path:
    """Where the metadata of ``index_path`` is written: ``NAME.faiss.json``."""
    return index_path.with_name(index_path.name + ".json")


def read_folder(emb_dir: str | os.PathLike, mmap: bool = True) -> EmbeddingFolder:
    """The embedding folder ``emb_dir``, with its errors as :class:`RetrievalError`.

    A folder that is not an embedding folder gets the command that makes one, into a folder of its
    own (never into a shard or image folder).
    """
    try:
        return read_embedding_folder(emb_dir, mmap=mmap)
    except MissingEmbeddingsError as exc:
        folder = Path(emb_dir)
        if not folder.is_dir():
            raise RetrievalError(
                f"{folder / EMBEDDINGS_FILE} not found (no such folder); make the embedding folder with `ssl-cyto embed --model MODEL --data DATA "
                f"--out {folder}`"
            ) from exc
        what = "a shard folder" if is_shard_dir(folder) else "not an embedding folder"
        raise RetrievalError(
            f"{folder / EMBEDDINGS_FILE} not found: {folder} is {what}; embed it into a new folder first, e.g. `ssl-cyto embed --model MODEL "
            f"--data {folder} --out emb/`, then `ssl-cyto index build emb/`"
        ) from exc
    except EmbeddingFolderError as exc:
        raise RetrievalError(str(exc)) from exc


def resolve_index_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(index.faiss, its metadata)`` for an embedding folder, an ``.faiss`` file or its metadata file.

    The metadata is ``NAME.faiss.json``, or the former ``NAME.json`` when only that one exists.
    """
    p = Path(path)
    if p.is_dir():
        p = p / INDEX_FILE
    elif p.name.endswith(".faiss.json"):
        p = p.with_name(p.name[: -len(".json")])
    elif p.suffix == ".json":
        p = p.with_suffix(".faiss")
    meta = meta_path_for(p)
    if not meta.exists() and p.with_suffix(".json").exists():
        meta = p.with_suffix(".json")  # written before the rename
    if not p.exists():
        raise RetrievalError(
            f"{p} not found; build it with `ssl-cyto index build {p.parent}` (or pass the right folder)"
        )
    if not meta.exists():
        raise RetrievalError(
            f"{meta} not found beside {p.name}; rebuild the index with `ssl-cyto index build`"
        )
    return p, meta


def build_index(
    emb_dir: str | os.PathLike,
    kind: str = "flat",
    *,
    gpu: bool = False,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    **params: Any,
) -> Path:
    """Build a FAISS index over ``EMB_DIR/embeddings.npy`` and write ``index.faiss`` + ``index.json``.

    Args:
        emb_dir: an embedding folder written by :func:`ssl_cyto.embedding.embed`.
        kind: ``flat`` (exact, default), ``ivf``, ``hnsw`` or ``ivfpq``.
        gpu: build on the GPU (FAISS with GPU support required; clear error otherwise).
        out: index file to write (default ``EMB_DIR/index.faiss``); its metadata goes beside it
            with the suffix ``.json``.
        seed: k-means / subsampling seed.
        progress: progress bar while adding.
        **params: see :func:`ssl_cyto.retrieval.faiss_index.make_index`.

    Returns:
        The path of the written ``.faiss`` file.

    Raises:
        RetrievalError: a bad embedding folder (or one without ``model.json``), bad parameters.
        GpuUnavailableError: ``gpu`` without a usable FAISS GPU.
    """
    folder = read_folder(emb_dir)
    if not folder.has_model:
        raise RetrievalError(
            f"{folder.path / 'model.json'} not found; an index must record which model made the vectors "
            "(re-run embed)"
        )
    t0 = time.perf_counter()
    x = normalize(folder.vectors)
    zero = int((~(x.any(axis=1))).sum())
    index, p = make_index(x, kind, gpu=gpu, seed=seed, progress=progress, normalized=True, **params)
    seconds = time.perf_counter() - t0
    notes = param_notes(kind, int(x.shape[0]), params, p)
    out_path = Path(out) if out is not None else folder.path / INDEX_FILE
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
        "weights_sha256": folder.model.get("weights_sha256"),
        "architecture": folder.model.get("architecture"),
        "source": folder.model.get("source"),  # format 2: where the model's starting weights came from
        "format_version": 2,
        "embeddings": EMBEDDINGS_FILE,
        "embeddings_sha256": sha256_file(folder.embeddings_path),
        "emb_dir": str(folder.path.resolve()),
        "index_bytes": out_path.stat().st_size,
        "built_on_gpu": bool(gpu),
        "build_seconds": round(seconds, 3),
        "notes": notes,
        "faiss_version": getattr(faiss, "__version__", "unknown"),
        "created": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    meta_path = meta_path_for(out_path)
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(meta_tmp, meta_path)
    old = out_path.with_suffix(".json")
    if old.is_file() and old != meta_path:
        old.unlink()  # the former name, left by an earlier build: it would describe another index
    return out_path


def read_index_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an index (folder, ``.faiss`` or its ``.json``), with ``index_path`` added."""
    index_path, meta_path = resolve_index_path(path)
    try:
        meta = dict(json.loads(meta_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise RetrievalError(f"{meta_path} is not valid JSON ({exc}); rebuild the index") from exc
    meta["index_path"] = str(index_path)
    return meta


def load_index(
    path: str | os.PathLike, nprobe: int | None = None, ef_search: int | None = None, gpu: bool = False
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
    meta = read_index_meta(path)
    index_path = meta["index_path"]
    index = faiss.read_index(index_path)
    if index.ntotal != meta.get("n"):
        raise RetrievalError(
            f"{index_path} holds {index.ntotal} vectors but its .json says {meta.get('n')}; rebuild the index"
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
        index = faiss.index_cpu_to_gpu(gpu_resources(), 0, index)
    return index, meta


def search(index: Any, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar database vectors for each query vector.

    Args:
        index: a FAISS index built by :func:`~ssl_cyto.retrieval.faiss_index.make_index` /
            :func:`build_index`.
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
