"""Similar cells for query images or cell ids: the library side of ``ssl-cyto query``.

Query images are embedded with the model the index records: ``EMB_DIR/backbone/`` (written by
``embed`` for a ``.ckpt``, released weights or a random-weight name), else the backbone folder named
in ``EMB_DIR/embed.json`` (relative to the folder when it lies inside it), else ``--model``; through
the one encoder path (:class:`ssl_cyto.embedding.encoder.Encoder`), so a query image gets the vector
``embed`` gives the same file. A model whose weights' sha256 differs from the one in ``index.json``
is refused (:class:`~ssl_cyto.embedding.errors.ModelMismatchError`): its vectors would live in
another space and the neighbours would be meaningless. Cells already in the index can be queried by ``cell_id`` (their stored vector is
used; the cell itself is left out of its neighbours).

Result (``ssl-cyto query --json``), one entry per query in the order given (images first, then
cell ids)::

    [{"query": "<image path or cell_id>",
      "neighbours": [{"rank": 1, "cell_id": "...", "path": "<root>/<path>", "label": "..." | null,
                      "similarity": 0.987}, ...]}]

``path`` is the neighbour's absolute image path (``root / path`` of its catalog row);
``similarity`` is the cosine similarity. A query image that cannot be read (missing, not an image)
does not stop the others: its entry is ``{"query": path, "neighbours": [], "error": "<why>"}``
(``ssl-cyto query`` counts these and exits 3 unless ``--allow-missing``). :func:`format_table` gives the plain-text table and
``gallery=PNG`` also draws the query/neighbour grid (:mod:`ssl_cyto.retrieval.gallery`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.embedding.encoder import Encoder
from ssl_cyto.embedding.errors import ModelMismatchError
from ssl_cyto.embedding.model_spec import is_random
from ssl_cyto.formats.embeddings import (
    BACKBONE_DIR,
    EMBED_JSON,
    MODEL_FILE,
    is_embedding_folder,
    read_embed_json,
)
from ssl_cyto.retrieval.errors import RetrievalError
from ssl_cyto.retrieval.gallery import QUERY_COLOUR, Tile, frame_for, save_gallery
from ssl_cyto.retrieval.index_io import load_index, read_folder, search

__all__ = ["ModelMismatchError", "emb_dir_of", "format_table", "query", "resolve_model"]

QUERY_IMAGE_HINT = "check that it is an image file (jpg, png, tif, ...)"


def emb_dir_of(index_meta: dict[str, Any]) -> Path:
    """The embedding folder of an index: beside ``index_path``, else the recorded ``emb_dir``."""
    here = Path(index_meta["index_path"]).parent
    if is_embedding_folder(here):
        return here
    recorded = index_meta.get("emb_dir")
    if recorded and is_embedding_folder(recorded):
        return Path(recorded)
    raise RetrievalError(
        f"no embedding folder (embeddings.npy + cells.parquet) beside {index_meta['index_path']} nor in "
        f"{recorded}; re-run embed"
    )


def resolve_model(emb_dir: str | os.PathLike, model: str | None) -> str:
    """The model spec to embed queries with: ``model`` if given, else the one the embedding used."""
    if model:
        return model
    emb_dir = Path(emb_dir)
    if (emb_dir / BACKBONE_DIR / MODEL_FILE).exists():
        return str(emb_dir / BACKBONE_DIR)
    info_path = emb_dir / EMBED_JSON
    if info_path.exists():
        recorded = read_embed_json(info_path).get("model", {}).get("path")
        if recorded and not Path(recorded).is_absolute():  # a backbone inside the folder (format 2)
            recorded = str(emb_dir / recorded)
        if recorded and (Path(recorded) / MODEL_FILE).exists():
            return str(recorded)
        raise RetrievalError(
            f"{info_path} names the backbone folder {recorded!r}, which is not there any more; pass `ssl-cyto query --model` or `ssl-cyto serve --model`"
        )
    raise RetrievalError(f"{emb_dir} records no backbone (no backbone/ and no embed.json); pass `ssl-cyto query --model` or `ssl-cyto serve --model`")


def _read_queries(paths: Sequence[str]) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """The query images that decode, and ``{path: why}`` for the others (never an exception)."""
    good: list[tuple[str, Any]] = []
    bad: dict[str, str] = {}
    for p in paths:
        if not Path(p).is_file():
            bad[p] = f"query image {p} not found" + (" (a folder, not a file)" if Path(p).is_dir() else "")
            continue
        try:
            good.append((p, open_rgb(p, hint=QUERY_IMAGE_HINT)))
        except (ImageDecodeError, OSError) as exc:
            bad[p] = str(exc)
    return good, bad


def _embed_images(
    images: Sequence[tuple[str, Any]], model_spec: str, index_meta: dict, device: str, seed: int
) -> np.ndarray:
    encoder = Encoder.load(model_spec, device=device, seed=seed)
    encoder.check(index_meta.get("weights_sha256"), str(index_meta["index_path"]))
    return encoder.embed_images([img for _, img in images])


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def _neighbours(cells: pd.DataFrame, sims: Any, ids: Any, k: int, exclude: int | None) -> list[dict]:
    out: list[dict] = []
    for sim, i in zip(sims, ids, strict=True):
        if i < 0 or (exclude is not None and int(i) == exclude):
            continue
        row = cells.iloc[int(i)]
        label = row.get("label")
        out.append(
            {
                "rank": len(out) + 1,
                "cell_id": str(row["cell_id"]),
                "path": str(Path(str(row["root"])) / str(row["path"])),
                "label": None if _missing(label) else str(label),
                "similarity": round(float(sim), 6),
            }
        )
        if len(out) == k:
            break
    return out


def query(
    images: Sequence[str | Path] = (),
    index: str | Path = ".",
    *,
    model: str | None = None,
    k: int = 10,
    cell_ids: Sequence[str] = (),
    gallery: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` most similar indexed cells for each query image and each ``cell_id``.

    Args:
        images: query image files (any format :func:`ssl_cyto.data.images.open_rgb` reads).
        index: an embedding folder with ``index.faiss``, or the ``.faiss`` / ``.json`` file.
        model: backbone to embed the images with (default: the one recorded by the embedding);
            refused unless its weights sha256 equals the index's.
        k: neighbours per query.
        cell_ids: ids of indexed cells to query with their stored vectors (self excluded).
        gallery: write the query/neighbour PNG here.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` for embedding the images.
        seed: seed of random weights when ``model`` is a name.
        nprobe: IVF override; ef_search: HNSW override.

    Returns:
        ``[{"query": str, "neighbours": [{"rank", "cell_id", "path", "label", "similarity"}...]}]``;
        an image that cannot be read has ``"neighbours": []`` and ``"error"`` (the others go on).

    Raises:
        ModelMismatchError: the model differs from the index's.
        RetrievalError: no query, unknown cell id, missing files.
    """
    if k < 1:
        raise RetrievalError(f"-k must be >= 1, got {k}")
    image_paths = [str(p) for p in images]
    cell_ids = list(cell_ids)
    if not image_paths and not cell_ids:
        raise RetrievalError("nothing to query: give image paths and/or `ssl-cyto query --cell-id`")
    faiss_index, meta = load_index(index, nprobe=nprobe, ef_search=ef_search)
    emb_dir = emb_dir_of(meta)
    folder = read_folder(emb_dir)
    cells = folder.cells
    if len(cells) != faiss_index.ntotal:
        raise RetrievalError(
            f"{emb_dir}/cells.parquet has {len(cells)} rows but the index holds {faiss_index.ntotal}; "
            "rebuild the index (`ssl-cyto index build`)"
        )
    results: list[dict[str, Any]] = []
    query_tiles: list[tuple[Any, str, Any]] = []  # (image, name, label)
    if image_paths:
        good, bad = _read_queries(image_paths)
        found: dict[str, list[dict]] = {}
        if good:
            vecs = _embed_images(good, resolve_model(emb_dir, model), meta, device, seed)
            sims, ids = search(faiss_index, vecs, k)
            for (p, _), s, i in zip(good, sims, ids, strict=True):
                found[p] = _neighbours(cells, s, i, k, None)
        for p in image_paths:
            if p in bad:
                results.append({"query": p, "neighbours": [], "error": bad[p]})
            else:
                results.append({"query": p, "neighbours": found[p]})
            query_tiles.append((p, Path(p).name, None))
    if cell_ids:
        position = pd.Series(np.arange(len(cells)), index=cells["cell_id"].to_numpy())
        missing = [c for c in cell_ids if c not in position.index]
        if missing:
            raise RetrievalError(
                f"cell id {missing[0]!r} is not in {emb_dir}/cells.parquet (e.g. {cells['cell_id'].iloc[0]!r}); "
                "ids are '<source>/<path>'"
            )
        rows = [int(position[c]) for c in cell_ids]
        sims, ids = search(faiss_index, np.asarray(folder.vectors[rows]), k + 1)
        for c, r, s, i in zip(cell_ids, rows, sims, ids, strict=True):
            results.append({"query": c, "neighbours": _neighbours(cells, s, i, k, r)})
            row = cells.iloc[r]
            label = row.get("label")
            query_tiles.append(
                (
                    Path(str(row["root"])) / str(row["path"]),
                    str(row["path"]),
                    None if _missing(label) else str(label),
                )
            )
    if gallery is not None:
        shown = [(r, t) for r, t in zip(results, query_tiles, strict=True) if "error" not in r]
        if shown:
            random = is_random(folder.model)
            _draw([r for r, _ in shown], [t for _, t in shown], gallery, dict(meta, random_weights=random))
    return results


def _draw(results: list[dict], query_tiles: list[tuple[Any, str, Any]], out: str | Path, meta: dict) -> Path:
    rows = []
    for res, (image, name, label) in zip(results, query_tiles, strict=True):
        caption = f"query\n{_short(name)}" + (f"\n{label}" if label is not None else "")
        tiles = [
            Tile(
                n["path"],
                f"#{n['rank']} {n['label'] or '?'}\nsim {n['similarity']:.4f}",
                frame_for(label, n["label"]),
            )
            for n in res["neighbours"]
        ]
        rows.append((Tile(image, caption, QUERY_COLOUR), tiles))
    model = (
        f"{meta.get('architecture')}, random weights"
        if meta.get("random_weights")
        else meta.get("architecture")
    )
    title = f"Nearest cells by cosine similarity ({model}, {meta.get('kind')} index, n={meta.get('n')})"
    return save_gallery(rows, out, title=title)


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def format_table(results: list[dict[str, Any]]) -> str:
    """The neighbours as a plain-text table, one block per query."""
    lines = []
    for res in results:
        if "error" in res:
            lines.append(f"query: {res['query']}  (not processed: {res['error']})")
            lines.append("")
            continue
        lines.append(f"query: {res['query']}")
        lines.append(f"  {'rank':>4}  {'similarity':>10}  {'label':<20}  cell_id")
        for n in res["neighbours"]:
            label = n["label"] if n["label"] is not None else "-"
            lines.append(f"  {n['rank']:>4}  {n['similarity']:>10.4f}  {label:<20}  {n['cell_id']}")
        lines.append("")
    return "\n".join(lines)
