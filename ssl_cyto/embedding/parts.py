"""Split the embed work across jobs and merge the parts: ``ssl-cyto embed --part I/N`` and
``ssl-cyto embed --merge PART_DIR... --out EMB_DIR``.

``--part I/N`` (1-based) embeds one of ``N`` disjoint parts of the data into its own embedding folder
(e.g. one task of a SLURM array: ``--part $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT``): for
a catalog or an image folder the ``I``-th of ``N`` contiguous blocks of its rows (after ``--limit``),
for shards every ``N``-th shard starting at the ``I``-th (``--limit`` is refused there: it counts
cells in loader order, which a part cannot know). Each part resumes like any embedding, and its
``embed.json`` records ``part: [I, N]``.

``--merge`` checks that the folders are the ``N`` parts of one run (same model weights, data and
options, each part once), then writes one folder with the rows sorted by ``cell_id`` - the same rows
in the same order as a single run, with the same vectors - the parts' ``missing.csv`` rows, summed
counts and ``merged_from``. A part's ``backbone/`` is copied along, and the parts'
``image_hashes.parquet`` (hashes of a folder's images, computed as embed decoded them) are joined.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.data.loading import ResolvedData
from ssl_cyto.embedding.errors import EmbedError
from ssl_cyto.formats.embeddings import BACKBONE_DIR, read_embedding_folder, write_embedding_folder
from ssl_cyto.formats.image_hashes import HASHES_FILE, read_hashes, write_hashes

__all__ = ["merge_parts", "parse_part", "select_part"]

MISSING_FILE = "missing.csv"


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``1 <= I <= N``.

    Raises:
        EmbedError: anything else.
    """
    first, sep, second = str(text).partition("/")
    if not sep or not first.strip().isdigit() or not second.strip().isdigit():
        raise EmbedError(f"--part {text!r}: expected I/N, e.g. 2/8 (1-based)")
    i, n = int(first), int(second)
    if not 1 <= i <= n:
        raise EmbedError(f"--part {text}: I must be between 1 and N")
    return i, n


def select_part(res: ResolvedData, limit: int | None, part: tuple[int, int]) -> ResolvedData:
    """The data of part ``I`` of ``N`` (see the module docstring).

    Raises:
        EmbedError: ``limit`` with shards.
    """
    i, n = part
    if res.kind == "catalog":
        assert res.catalog is not None
        cat = res.catalog if limit is None else res.catalog.iloc[:limit]
        block = np.array_split(np.arange(len(cat)), n)[i - 1]
        return replace(res, catalog=cat.iloc[block].reset_index(drop=True))
    if limit is not None:
        raise EmbedError(
            "`ssl-cyto embed --limit` cannot be combined with `ssl-cyto embed --part` for shards (it counts "
            "cells in loader order)"
        )
    counts = None if res.counts is None else res.counts[i - 1 :: n]
    return replace(res, urls=res.urls[i - 1 :: n], counts=counts, sources=None)


def _check_parts(infos: list[dict[str, Any]], parts: list[Path]) -> int:
    n_values = {tuple(info.get("part") or ())[1:] for info in infos}
    if any(not info.get("part") for info in infos) or len(n_values) != 1:
        raise EmbedError(f"--merge: every folder must be a part of one `embed --part I/N` run: {parts}")
    n = int(infos[0]["part"][1])
    seen = sorted(int(info["part"][0]) for info in infos)
    if seen != list(range(1, n + 1)):
        raise EmbedError(f"--merge: parts {seen} given; need each of 1..{n} once")
    base = {k: v for k, v in infos[0]["fingerprint"].items() if k != "part"}
    for info, path in zip(infos, parts, strict=True):
        other = {k: v for k, v in info["fingerprint"].items() if k != "part"}
        if other != base:
            raise EmbedError(f"--merge: {path} was embedded with another model or data than {parts[0]}")
    return n


def _counts(infos: list[dict[str, Any]], cells: pd.DataFrame, dim: int) -> dict[str, Any]:
    def total(key: str) -> int | None:
        values = [info["counts"].get(key) for info in infos]
        return None if any(v is None for v in values) else int(sum(values))

    return {
        "cells": len(cells),
        "dim": dim,
        "expected": total("expected"),
        "unreadable_or_missing": total("unreadable_or_missing"),
        "missing_list": None,
        "odd_size": total("odd_size") or 0,
        "resumed_from_chunks": total("resumed_from_chunks") or 0,
        "embedded_this_run": total("embedded_this_run") or 0,
        "by_source": {str(k): int(v) for k, v in cells["source"].value_counts().sort_index().items()},
        "by_label": {
            str(k): int(v) for k, v in cells["label"].value_counts(dropna=False).sort_index().items()
        },
    }


def merge_parts(parts: list[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Merge the part folders of one ``embed --part I/N`` run into ``out_dir`` (see the module docstring).

    Raises:
        EmbedError: folders that are not the parts of one run, or a cell in two parts.
    """
    paths = [Path(p) for p in parts]
    folders = [read_embedding_folder(p, mmap=False) for p in paths]
    infos = [dict(f.embed) for f in folders]
    _check_parts(infos, paths)
    order = sorted(range(len(paths)), key=lambda k: int(infos[k]["part"][0]))
    cells = pd.concat([folders[k].cells for k in order], ignore_index=True)
    vectors = np.concatenate([np.asarray(folders[k].vectors, dtype=np.float32) for k in order])
    dup = cells["cell_id"][cells["cell_id"].duplicated()]
    if len(dup):
        raise EmbedError(f"--merge: cell {dup.iloc[0]!r} is in two parts; embed the parts again")
    sort = np.argsort(cells["cell_id"].to_numpy(dtype=str), kind="stable")
    cells, vectors = cells.iloc[sort].reset_index(drop=True), vectors[sort]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(infos[order[0]])
    record.pop("part", None)
    record["fingerprint"] = {k: v for k, v in record["fingerprint"].items() if k != "part"}
    record["counts"] = _counts([infos[k] for k in order], cells, int(vectors.shape[1]))
    record["merged_from"] = [str(paths[k].resolve()) for k in order]
    record["odd_size"] = [row for k in order for row in infos[k].get("odd_size", [])]
    backbone = paths[order[0]] / BACKBONE_DIR
    if backbone.is_dir():
        shutil.copytree(backbone, out / BACKBONE_DIR, dirs_exist_ok=True)
        record["model"] = dict(record["model"], path=BACKBONE_DIR)
    missing = [pd.read_csv(paths[k] / MISSING_FILE) for k in order if (paths[k] / MISSING_FILE).is_file()]
    if missing:
        pd.concat(missing, ignore_index=True).to_csv(out / MISSING_FILE, index=False)
        record["counts"]["missing_list"] = MISSING_FILE
    write_embedding_folder(out, vectors, cells, dict(folders[order[0]].model), record)
    hashes = read_hashes(*[paths[k] / HASHES_FILE for k in order])
    if not hashes.empty:
        write_hashes(out / HASHES_FILE, zip(hashes["cell_id"], hashes["phash"], hashes["hash"], strict=True))
    return out
