"""Resumable embedding: the ``EMB_DIR/.partial/`` chunks and their assembly into the folder.

Every ``chunk_batches`` batches the finished embeddings are written to
``.partial/chunk-XXXXX.npy`` with their rows in ``chunk-XXXXX.parquet``; the ``.npy`` is renamed
into place last, so a chunk either exists whole or not at all. ``.partial/state.json`` holds the
fingerprint (model weights, data, limit) of the run the chunks belong to: a rerun with the same
fingerprint continues, another is refused unless the caller overwrites (:func:`check_existing`,
which also refuses a finished folder of another model or data).

Image hashes computed where the loader decoded a folder's images (rows with ``image_hash``) go to
``chunk-XXXXX.hashes.parquet`` with their chunk, and :func:`merge_hashes` gathers them into the
folder's ``image_hashes.parquet`` (:mod:`ssl_cyto.formats.image_hashes`), as pack does per shard.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.embedding.errors import EmbedError, ModelMismatchError
from ssl_cyto.formats.embeddings import (
    BACKBONE_DIR,
    EMBED_JSON,
    EMBEDDINGS_FILE,
    FOLDER_FILES,
    INDEX_FILE,
    INDEX_JSON,
    INDEX_META,
    new_vectors_file,
    read_embed_json,
)
from ssl_cyto.formats.image_hashes import HASHES_FILE, read_hashes, write_hashes

__all__ = [
    "PARTIAL",
    "STATE",
    "assemble",
    "check_existing",
    "clear_outputs",
    "completed_chunks",
    "data_id",
    "done_cell_ids",
    "fingerprint",
    "merge_hashes",
    "mismatch",
    "read_state",
    "write_chunk",
    "write_state",
]

PARTIAL = ".partial"
STATE = "state.json"
_HASHES_SUFFIX = ".hashes.parquet"


def data_id(data: str) -> str:
    """A stable identity of a data spec: its absolute path when it is a local path, else the string."""
    path = Path(data)
    return str(path.resolve()) if path.exists() else data


def fingerprint(meta: dict[str, Any], data: str, limit: int | None) -> dict[str, Any]:
    """What must stay the same for chunks (or a finished folder) to be reused."""
    return {
        "weights_sha256": meta.get("weights_sha256"),
        "architecture": meta.get("architecture"),
        "input_size": meta.get("input_size"),
        "data": data_id(data),
        "limit": limit,
    }


def mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every fingerprint entry that differs."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]


def read_state(partial: Path) -> dict[str, Any] | None:
    """The fingerprint of the partial run in ``partial``, or None when there is none."""
    path = partial / STATE
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise EmbedError(f"{path} is unreadable ({exc}); rerun `ssl-cyto embed` with --overwrite") from exc


def write_state(partial: Path, fp: dict[str, Any]) -> None:
    """Record the fingerprint of the run whose chunks go into ``partial`` (created)."""
    partial.mkdir(parents=True, exist_ok=True)
    (partial / STATE).write_text(json.dumps(fp, indent=2) + "\n", encoding="utf-8")


def completed_chunks(partial: Path) -> list[tuple[Path, Path]]:
    """``(npy, parquet)`` pairs of complete chunks in index order (stray temporary files removed)."""
    for tmp in partial.glob("*.tmp*"):
        tmp.unlink()
    pairs = []
    for npy in sorted(partial.glob("chunk-*.npy")):
        rows = npy.with_suffix(".parquet")
        if rows.exists():
            pairs.append((npy, rows))
    return pairs


def done_cell_ids(chunks: list[tuple[Path, Path]]) -> set[str]:
    """The ``cell_id`` of every cell already embedded in ``chunks``."""
    done: set[str] = set()
    for _, rows in chunks:
        done.update(pd.read_parquet(rows, columns=["cell_id"])["cell_id"].tolist())
    return done


def write_chunk(
    partial: Path, index: int, feats: list[np.ndarray], rows: list[dict], columns: list[str]
) -> None:
    """Write chunk ``index`` (its rows first, the vectors last, each renamed into place)."""
    stem = partial / f"chunk-{index:05d}"
    arr = np.concatenate(feats).astype(np.float32, copy=False)
    if arr.shape[0] != len(rows):
        raise RuntimeError(f"internal error: {arr.shape[0]} embeddings for {len(rows)} rows")
    df = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    df.to_parquet(f"{stem}.parquet.tmp", index=False)
    os.replace(f"{stem}.parquet.tmp", f"{stem}.parquet")
    hashed = [(r["cell_id"], r.get("phash") or "", r["image_hash"]) for r in rows if r.get("image_hash")]
    if hashed:  # written before the vectors, so a complete chunk has its hashes
        write_hashes(f"{stem}{_HASHES_SUFFIX}", hashed)
    with open(f"{stem}.npy.tmp", "wb") as fh:
        np.save(fh, arr)
    os.replace(f"{stem}.npy.tmp", f"{stem}.npy")  # the chunk counts as done from here on


def assemble(
    out_dir: Path, chunks: list[tuple[Path, Path]], columns: list[str]
) -> tuple[np.memmap, pd.DataFrame]:
    """Merge the chunks, sorted by ``cell_id``, into a vectors file of ``out_dir`` and a cells table.

    Returns:
        ``(vectors, cells)``: a memory map from :func:`ssl_cyto.formats.embeddings.new_vectors_file`
        (for :func:`~ssl_cyto.formats.embeddings.write_embedding_folder`) and the sorted rows.

    Raises:
        EmbedError: no chunk, a cell id met twice, or a chunk whose shape disagrees with its rows.
    """
    if not chunks:
        raise EmbedError(
            f"{out_dir}: no cell could be embedded (all images unreadable, or the data is empty)"
        )
    frames = [pd.read_parquet(rows) for _, rows in chunks]
    sizes = [len(f) for f in frames]
    cells = pd.concat(frames, ignore_index=True)
    dup = cells["cell_id"][cells["cell_id"].duplicated()]
    if len(dup):
        raise EmbedError(
            f"the data yields cell_id {dup.iloc[0]!r} (and {len(dup) - 1} more) more than once; cell ids must be "
            "unique (were the same cells packed twice?)"
        )
    order = np.argsort(cells["cell_id"].to_numpy(dtype=object), kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    dim = int(np.load(chunks[0][0], mmap_mode="r").shape[1])
    out = new_vectors_file(out_dir, len(cells), dim)
    start = 0
    for (npy, _), size in zip(chunks, sizes, strict=True):
        block = np.load(npy)
        if block.shape != (size, dim):
            raise EmbedError(
                f"{npy}: shape {block.shape} does not match its rows ({size}, {dim}); rerun `ssl-cyto embed` with --overwrite"
            )
        out[position[start : start + size]] = block
        start += size
    return out, cells.iloc[order].reset_index(drop=True).reindex(
        columns=columns
    )  # chunks of older runs lack new columns


def merge_hashes(out_dir: Path, chunks: list[tuple[Path, Path]]) -> Path | None:
    """Write the image hashes of ``chunks`` into ``out_dir/image_hashes.parquet`` (None: chunks had none).

    Hashes already in that file (kept by an earlier probe or dedup) stay for the cells the chunks
    did not hash, e.g. chunks of a run resumed from before embed hashed images.
    """
    parts = [p for npy, _ in chunks if (p := npy.with_name(npy.stem + _HASHES_SUFFIX)).is_file()]
    if not parts:
        return None
    table = read_hashes(*parts, out_dir / HASHES_FILE)  # the first row of a cell wins: this run's
    rows = zip(table["cell_id"], table["phash"], table["hash"], strict=True)
    return write_hashes(out_dir / HASHES_FILE, rows)


def clear_outputs(out_dir: Path) -> None:
    """Remove the folder's outputs, its index and hashes, ``.partial/`` and ``backbone/`` (``--overwrite``)."""
    for name in (*FOLDER_FILES, INDEX_FILE, INDEX_META, INDEX_JSON, HASHES_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for name in (PARTIAL, BACKBONE_DIR):
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)


def check_existing(out: Path, fp: dict[str, Any], overwrite: bool) -> bool:
    """Refuse outputs of another model/data; True when ``out`` is already complete for ``fp``."""
    if overwrite:
        return False
    partial = out / PARTIAL
    if (out / EMBED_JSON).exists():
        diff = mismatch(read_embed_json(out).get("fingerprint", {}), fp)
        if diff:
            raise ModelMismatchError(
                f"{out} already holds embeddings of another model or data ({'; '.join(diff)}); "
                "pass --overwrite to `ssl-cyto embed` to replace them or choose another --out"
            )
        if (out / EMBEDDINGS_FILE).exists():
            return True
    old = read_state(partial)
    if old is not None:
        diff = mismatch(old, fp)
        if diff:
            raise ModelMismatchError(
                f"{partial} holds a partial embedding of another model or data ({'; '.join(diff)}); "
                "pass --overwrite to `ssl-cyto embed` to discard it, or rerun with the original model and data to resume"
            )
    return False
