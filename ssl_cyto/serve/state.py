"""What the service loads once at start-up and shares, read-only, between requests.

One embedding folder (:func:`ssl_cyto.formats.embeddings.read_embedding_folder`, vectors memory-
mapped), its FAISS index (:func:`ssl_cyto.retrieval.index_io.load_index`), the model the folder was
embedded with (found as ``ssl-cyto query`` finds it: :func:`ssl_cyto.retrieval.search.resolve_model`,
or ``serve --model``; loaded by the one encoder path :class:`ssl_cyto.embedding.encoder.Encoder`,
refused unless its weights sha256 is the one ``index.json`` records), the cells' images
(:class:`ssl_cyto.serve.images.ImageStore`) and the UMAP coordinates written by ``ssl-cyto umap`` (``EMB_DIR/umap/umap.parquet``, or ``OUT/umap/``
beside the ``OUT/emb/`` of ``ssl-cyto demo``) if present.

The model and index are shared by all request threads; torch and FAISS are capped to ``threads``
OpenMP threads and at most ``threads`` queries compute at once (:attr:`ServeState.compute`), so
concurrent requests queue instead of oversubscribing the cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image

from ssl_cyto.data.vocabulary import full_name
from ssl_cyto.embedding.encoder import Encoder
from ssl_cyto.embedding.encoder import resolve_device as encoder_device
from ssl_cyto.formats.embeddings import EmbeddingFolder, read_embedding_folder
from ssl_cyto.formats.errors import SslCytoError
from ssl_cyto.retrieval.index_io import load_index
from ssl_cyto.retrieval.search import emb_dir_of, resolve_model
from ssl_cyto.serve.errors import ServeError
from ssl_cyto.serve.images import ImageStore, shard_files_of

__all__ = ["UMAP_FILE", "ServeState", "configure_threads", "load_state", "resolve_device"]

UMAP_FILE = Path("umap") / "umap.parquet"


def configure_threads(threads: int | None) -> int:
    """Cap torch and FAISS to ``threads`` threads (default: the cores this process may use)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = max(1, int(threads))
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    return n


def resolve_device(device: str) -> str:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a start-up error (the one
    resolver, :func:`ssl_cyto.embedding.encoder.resolve_device`, as a :class:`ServeError`)."""
    try:
        return encoder_device(device)
    except SslCytoError as exc:
        raise ServeError(str(exc)) from exc


def _column(cells: pd.DataFrame, name: str) -> np.ndarray:
    if name not in cells.columns:
        return np.full(len(cells), None, dtype=object)
    values = cells[name].astype(object).to_numpy()
    return np.array(
        [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values], dtype=object
    )


@dataclass
class ServeState:
    """The loaded embedding folder, index, model and images (see the module docstring)."""

    emb_dir: Path
    folder: EmbeddingFolder
    index: Any
    index_meta: dict
    module: torch.nn.Module
    model_meta: dict
    model_spec: str
    transform: Any
    device: str
    threads: int
    images: ImageStore
    cell_ids: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    roots: np.ndarray
    position: dict[str, int]
    umap: pd.DataFrame | None = None
    compute: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    encoder: Encoder | None = None

    @property
    def n(self) -> int:
        """Number of indexed cells."""
        return len(self.cell_ids)

    def label_name(self, i: int) -> str | None:
        """The full class name of row ``i`` (``NGS`` -> ``Neutrophil (segmented)``), None if unlabelled."""
        label = self.labels[i]
        return None if label is None else full_name(str(self.sources[i]), str(label))

    def embed(self, img: Image.Image) -> np.ndarray:
        """Embed one RGB image with the index's model through the one encoder path (as ``ssl-cyto
        query`` and ``ssl-cyto embed`` do): ``(1, D)`` float32."""
        assert self.encoder is not None
        return self.encoder.embed_images([img])

    def vector_of(self, row: int) -> np.ndarray:
        """The stored vector of an indexed cell, ``(1, D)`` float32."""
        return np.asarray(self.folder.vectors[row : row + 1], dtype=np.float32)

    def counts(self) -> tuple[list[dict], list[dict]]:
        """``(classes, sources)``: each label with its full name and count; each source with its count."""
        frame = pd.DataFrame({"label": self.labels, "source": self.sources})
        classes = []
        labelled = frame.dropna(subset=["label"])
        for label, group in labelled.groupby("label", sort=True):
            source = str(group["source"].value_counts().index[0])
            classes.append({"label": str(label), "name": full_name(source, str(label)), "count": len(group)})
        sources = [
            {"source": str(s), "count": int(c)}
            for s, c in frame["source"].value_counts().sort_index().items()
        ]
        return classes, sources


def _row_lookup(
    position: dict[str, int], sources: np.ndarray, roots: np.ndarray, paths: np.ndarray
) -> Callable[[str], tuple[str, str, str] | None]:
    """``cell_id -> (source, root, path)`` over the loaded columns (None for an unknown id)."""

    def lookup(cell_id: str) -> tuple[str, str, str] | None:
        i = position.get(cell_id)
        if i is None:
            return None
        return str(sources[i]), str(roots[i]), str(paths[i])

    return lookup


def _read_umap(emb_dir: Path, position: dict[str, int]) -> pd.DataFrame | None:
    """``EMB_DIR/umap/umap.parquet`` (``ssl-cyto umap``'s default), else ``EMB_DIR/../umap/umap.parquet``
    (where ``ssl-cyto demo`` puts it) if every cell in it is indexed here."""
    for path in (emb_dir / UMAP_FILE, emb_dir.parent / UMAP_FILE):
        if not path.is_file():
            continue
        frame = pd.read_parquet(path, columns=["cell_id", "x", "y"])
        known = frame["cell_id"].isin(position.keys())
        if path.parent.parent == emb_dir or bool(known.all()):
            return frame[known].reset_index(drop=True)
    return None


def _load_encoder(emb_dir: Path, model: str | None, dev: str, index_meta: dict) -> Encoder:
    """The encoder of the indexed cells (``model`` or the one the folder records), weights checked."""
    try:
        spec = str(resolve_model(emb_dir, model))
        encoder = Encoder.load(spec, device=dev)
    except SslCytoError as exc:
        raise ServeError(f"{emb_dir}: cannot load the model these cells were embedded with: {exc}") from exc
    try:
        encoder.check(index_meta.get("weights_sha256"), str(index_meta.get("index_path")))
    except SslCytoError as exc:
        raise ServeError(str(exc)) from exc
    return encoder


def load_state(
    index: str | Path, device: str = "auto", threads: int | None = None, model: str | None = None
) -> ServeState:
    """Load everything the service needs, once (see the module docstring).

    Args:
        index: an embedding folder with ``index.faiss`` (or the ``.faiss`` file).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for embedding uploads.
        threads: torch/FAISS threads and concurrent computations (default: the usable cores).
        model: the backbone the cells were embedded with, when it is kept outside the embedding
            folder (``serve --model``); refused unless its weights sha256 is the index's.

    Raises:
        ServeError: no folder, no index, a model that is missing or differs from the index's, or an
            index that does not match ``cells.parquet``.
    """
    path = Path(index)
    if not path.exists():
        raise ServeError(f"--index {path}: not found; give the embedding folder written by `ssl-cyto embed`")
    if path.is_dir() and not (path / "index.faiss").is_file():
        raise ServeError(
            f"--index {path}: no index.faiss in this folder; build it with `ssl-cyto index build {path}`"
        )
    n_threads = configure_threads(threads)
    dev = resolve_device(device)
    try:
        faiss_index, index_meta = load_index(path)
        emb_dir = emb_dir_of(index_meta)
        folder = read_embedding_folder(emb_dir, mmap=True)
    except SslCytoError as exc:
        raise ServeError(f"--index {path}: {exc}") from exc
    if len(folder.cells) != faiss_index.ntotal or len(folder.vectors) != faiss_index.ntotal:
        raise ServeError(
            f"{emb_dir}: cells.parquet has {len(folder.cells)} rows but the index holds {faiss_index.ntotal}; "
            f"rebuild it with `ssl-cyto index build {emb_dir}`"
        )
    encoder = _load_encoder(emb_dir, model, dev, index_meta)
    cells = folder.cells
    cell_ids = cells["cell_id"].astype(str).to_numpy(dtype=object)
    position = {str(c): i for i, c in enumerate(cell_ids)}
    sources, roots, paths = _column(cells, "source"), _column(cells, "root"), _column(cells, "path")
    embed_meta = folder.embed
    roots_meta = embed_meta.get("roots") if isinstance(embed_meta.get("roots"), dict) else None
    images = ImageStore(
        _row_lookup(position, sources, roots, paths), shard_files_of(embed_meta, emb_dir), roots_meta
    )
    return ServeState(
        emb_dir=emb_dir,
        folder=folder,
        index=faiss_index,
        index_meta=index_meta,
        module=encoder.module,
        model_meta=encoder.meta,
        model_spec=encoder.spec,
        transform=encoder.transform,
        device=dev,
        threads=n_threads,
        images=images,
        cell_ids=cell_ids,
        labels=_column(cells, "label"),
        sources=sources,
        paths=paths,
        roots=roots,
        position=position,
        umap=_read_umap(emb_dir, position),
        compute=threading.BoundedSemaphore(n_threads),
        encoder=encoder,
    )
