"""Small embedding folders for the retrieval tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_cyto.formats.catalog import CATALOG_COLUMNS


def clustered(n: int, dim: int, n_clusters: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    x = centres[labels] + 0.5 * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def write_emb_dir(out: Path, x: np.ndarray, labels: np.ndarray, sha: str = "a" * 64) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", x)
    rows = [
        {
            "cell_id": f"folder:t/c{lab}/{i:05d}.png",
            "source": "folder:t",
            "path": f"c{lab}/{i:05d}.png",
            "root": str(out / "images"),
            "label": f"c{lab}",
            "reannot1": None,
            "reannot2": None,
            "um_per_px": None,
            "sha256": None,
        }
        for i, lab in enumerate(labels)
    ]
    pd.DataFrame(rows, columns=CATALOG_COLUMNS).to_parquet(out / "cells.parquet", index=False)
    (out / "model.json").write_text(json.dumps({"architecture": "test", "weights_sha256": sha}))
    return out


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn @ xn.T
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids
