"""Verify a packed shard folder against its ``index.json`` (``ssl-cyto pack --verify SHARD_DIR``)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from ssl_cyto.data.images import ImageDecodeError, open_rgb, size_problem
from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.formats.progress import progress_bar
from ssl_cyto.formats.shard_index import IMAGE_FORMATS, SHARD_GLOB, cell_key, key_to_cell_id, read_index


def _read_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """key -> {extension: bytes} of one tar (raises tarfile.TarError / OSError)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:") as tf:
        for member in tf:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            fh = tf.extractfile(member)
            assert fh is not None
            samples.setdefault(key, {})[ext] = fh.read()
    return samples


def _sample_row(shard: str, key: str, parts: dict[str, bytes]) -> tuple[dict | None, str | None]:
    """``(json row, None)`` of a well-formed sample (json + one image), else ``(None, problem)``."""
    images = [e for e in parts if e in IMAGE_FORMATS]
    if "json" not in parts or len(images) != 1:
        return None, f"{shard}: sample {key} has {sorted(parts)}, expected json + one image"
    try:
        row = json.loads(parts["json"])
    except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
        return None, f"{shard}: sample {key}: bad json ({exc})"
    if not isinstance(row, dict):
        return None, f"{shard}: sample {key}: bad json (not an object)"
    return row, None


def verify(shard_dir: str | os.PathLike, decode: bool = False, progress: bool = True) -> dict:
    """Re-read every shard of a folder and check it against ``index.json``.

    Checks per shard: the file exists, its size and sha256 match, it is a readable tar, every sample
    has ``.json`` and exactly one image, the json's ``cell_id`` matches the key, the sample count
    matches; across shards: no cell twice, totals match. ``decode=True`` also decodes every image.

    Returns:
        ``{"ok": bool, "shard_dir", "shards", "cells", "problems": [str, ...], "odd_size": [str, ...]}``;
        each problem names the shard. ``odd_size`` lists the images with a side under 16 px or over
        4096 px (warnings, not problems): decoded with ``decode=True``, else as recorded by pack.

    Raises:
        MissingInputError: no ``index.json`` in ``shard_dir``.
    """
    d = Path(shard_dir)
    problems: list[str] = []
    index = read_index(d)
    seen: set[str] = set()
    odd: list[str] = []
    cells = 0
    listed = {s["name"] for s in index["shards"]}
    for extra in sorted(p.name for p in d.glob(SHARD_GLOB) if p.name not in listed):
        problems.append(f"{extra}: shard file not listed in index.json")
    for s in progress_bar(index["shards"], desc="verify", unit="shard", disable=not progress):
        name, path = s["name"], d / s["name"]
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != s["bytes"]:
            problems.append(f"{name}: {size} bytes, index.json says {s['bytes']}")
        if sha256_file(path) != s["sha256"]:
            problems.append(f"{name}: sha256 differs from index.json (file changed or corrupt)")
        try:
            samples = _read_samples(path)
        except (tarfile.TarError, OSError) as exc:
            problems.append(f"{name}: unreadable tar ({exc})")
            continue
        for key, parts in samples.items():
            row, problem = _sample_row(name, key, parts)
            if row is None:
                problems.append(str(problem))
                continue
            if cell_key(str(row.get("cell_id"))) != key:
                problems.append(f"{name}: sample {key}: json cell_id {row.get('cell_id')!r} does not match")
            if key in seen:
                problems.append(f"{name}: cell {key_to_cell_id(key)!r} appears in more than one shard")
            seen.add(key)
            if decode:
                ext = next(e for e in parts if e in IMAGE_FORMATS)
                try:
                    img = open_rgb(parts[ext], name=f"{name}:{key}.{ext}")
                except ImageDecodeError as exc:
                    problems.append(f"{name}: {exc}")
                else:
                    why = size_problem(*img.size)
                    if why is not None:
                        odd.append(f"{row.get('cell_id')}: {why}")
        if len(samples) != s["count"]:
            problems.append(f"{name}: {len(samples)} samples, index.json says {s['count']}")
        cells += len(samples)
    if cells != index["total_cells"]:
        problems.append(f"index.json: total_cells {index['total_cells']} but the shards hold {cells}")
    if not decode:
        odd = [f"{r['cell_id']}: {r['reason']}" for r in index.get("odd_size", [])]
    return {
        "ok": not problems,
        "shard_dir": str(d),
        "shards": len(index["shards"]),
        "cells": cells,
        "problems": problems,
        "odd_size": odd,
    }
