"""Synthetic embedding folders for the evaluation tests (as `ssl-cyto embed` writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_cyto.formats.catalog import CATALOG_COLUMNS


def write_emb_dir(
    out: Path,
    feats: np.ndarray,
    labels: list,
    source: str | list[str] = "folder:synth",
    reannot: tuple[list, list] | None = None,
    ids: list[str] | None = None,
    method: str = "simclr",
) -> Path:
    """An EMB_DIR as `ssl-cyto embed` writes it: embeddings.npy + cells.parquet + model.json + embed.json."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    sources = [source] * n if isinstance(source, str) else source
    paths = [f"{lab}/cell_{i:04d}.png" for i, lab in enumerate(labels)]
    cells = pd.DataFrame(
        {
            "cell_id": ids or [f"{s}/{p}" for s, p in zip(sources, paths, strict=True)],
            "source": sources,
            "path": paths,
            "root": "/nonexistent",
            "label": labels,
            "reannot1": reannot[0] if reannot else [None] * n,
            "reannot2": reannot[1] if reannot else [None] * n,
            "um_per_px": [None] * n,
            "sha256": [None] * n,
        },
        columns=CATALOG_COLUMNS,
    )
    np.save(out / "embeddings.npy", feats.astype(np.float32))
    cells.to_parquet(out / "cells.parquet", index=False)
    (out / "model.json").write_text(
        json.dumps({"architecture": "tiny_cnn", "method": method, "embed_dim": feats.shape[1]})
    )
    (out / "embed.json").write_text(json.dumps({"data": "synth:folder"}))
    return out


def blobs(n_per_class: int, k: int, dim: int = 16, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 4
    y = np.repeat(np.arange(k), n_per_class)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    return x, [f"C{c}" for c in y]
