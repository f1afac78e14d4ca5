"""Near-duplicate cells of an embedding folder: proposed by the FAISS index, confirmed on the images.

Public cell datasets are assembled from overlapping smears and re-published in each other's
collections; a probe whose test cells have copies among its training cells scores memory, not
representation. :func:`find_near_duplicates` (``ssl-cyto dedup``):

1. **Candidates**: each cell's ``candidates`` nearest cells by cosine similarity of the embeddings,
   through the folder's FAISS index (:func:`ssl_cyto.retrieval.index_io.load_index`; an exact
   in-memory index when ``index.faiss`` has not been built). The embedding only proposes: no
   similarity threshold, since its scale depends on the model.
2. **Confirmation**: a pair is a near-duplicate when the perceptual hashes of the two images
   (:mod:`ssl_cyto.data.image_hash`, orientation- and crop-aware; stored by ``pack`` or computed
   once and kept, :mod:`ssl_cyto.evaluation.hash_store`) differ in at most
   ``threshold`` of 256 bits (default :data:`DEFAULT_THRESHOLD`, chosen on a generated set of seed 0
   with planted re-encoded, flipped and cropped copies and checked on seed 1:
   ``tests/evaluation/test_dedup.py``).
3. Each pair is labelled ``within source`` or ``across sources`` and, when ``EMB_DIR/split.parquet``
   exists (written by ``ssl-cyto probe``), with both cells' side of each saved split; a pair with
   one cell in ``train`` and one in ``test`` leaks.

:func:`folds_leakage` is the same check restricted to test cells against their training cells,
used by ``ssl-cyto probe`` to warn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_cyto.evaluation.hash_store import HashTable, cell_hashes, hash_sources, image_paths, images_available
from ssl_cyto.evaluation.protocol import SPLIT_FILE
from ssl_cyto.formats.embeddings import INDEX_FILE, read_embedding_folder
from ssl_cyto.formats.errors import InputError, SslCytoError
from ssl_cyto.retrieval.faiss_index import make_index, normalize
from ssl_cyto.retrieval.index_io import load_index, search

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_THRESHOLD",
    "PAIR_COLUMNS",
    "DedupError",
    "DedupResult",
    "find_near_duplicates",
    "folds_leakage",
    "images_available",
    "leakage_warning",
]

DEFAULT_THRESHOLD = 30
"""Largest Hamming distance (of 256 bits) between two images' hashes for a near-duplicate pair."""
DEFAULT_CANDIDATES = 10
"""Nearest cells (by embedding) checked on the images for each cell."""
PAIR_COLUMNS = (
    "cell_id_a",
    "cell_id_b",
    "source_a",
    "source_b",
    "label_a",
    "label_b",
    "scope",
    "cosine",
    "hash_distance",
)
"""Columns of ``pairs.csv`` (then one ``<split>_a``/``<split>_b`` pair and ``<split>_leak`` per saved split)."""


class DedupError(InputError):
    """Bad input to ``ssl-cyto dedup`` (no embedding folder, images that cannot be found)."""


@dataclass
class DedupResult:
    """What :func:`find_near_duplicates` found."""

    pairs: pd.DataFrame
    n_cells: int
    n_candidates: int
    n_hashed: int
    unreadable: list[str] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)  # split column -> train/test pairs
    seconds: float = 0.0


def _candidates(index: Any, x: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (M, 2) of query row, database row; cosine) of the ``k`` nearest database rows per query."""
    sims, ids = search(index, x, k + (1 if exclude_self else 0))
    q = np.repeat(np.arange(len(x)), ids.shape[1])
    d = ids.ravel()
    s = sims.ravel()
    keep = d >= 0
    if exclude_self:
        keep &= d != q
    return np.stack([q[keep], d[keep]], axis=1), s[keep]


def _confirm(
    pairs: np.ndarray, sims: np.ndarray, hashes: HashTable, threshold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dist = hashes.distances(pairs)
    ok = (dist >= 0) & (dist <= threshold)
    return pairs[ok], sims[ok], dist[ok]


def _pairs_frame(cells: pd.DataFrame, pairs: np.ndarray, sims: np.ndarray, dist: np.ndarray) -> pd.DataFrame:
    a, b = cells.iloc[pairs[:, 0]], cells.iloc[pairs[:, 1]]
    src_a, src_b = a["source"].astype(str).to_numpy(), b["source"].astype(str).to_numpy()
    frame = pd.DataFrame(
        {
            "cell_id_a": a["cell_id"].to_numpy(),
            "cell_id_b": b["cell_id"].to_numpy(),
            "source_a": src_a,
            "source_b": src_b,
            "label_a": a["label"].to_numpy(),
            "label_b": b["label"].to_numpy(),
            "scope": np.where(src_a == src_b, "within source", "across sources"),
            "cosine": np.round(sims.astype(float), 4),
            "hash_distance": dist,
        },
        columns=list(PAIR_COLUMNS),
    )
    return frame.sort_values(["hash_distance", "cell_id_a", "cell_id_b"], kind="stable").reset_index(
        drop=True
    )


def _add_splits(frame: pd.DataFrame, split_path: Path) -> dict[str, int]:
    """Per saved split column: each cell's side and whether the pair straddles train and test."""
    if not split_path.is_file():
        return {}
    saved = pd.read_parquet(split_path)
    leaks: dict[str, int] = {}
    for col in ("split", "fold", "dinobloom"):
        if col not in saved.columns:
            continue
        side = saved.set_index("cell_id")[col]
        sa, sb = frame["cell_id_a"].map(side), frame["cell_id_b"].map(side)
        frame[f"{col}_a"], frame[f"{col}_b"] = sa, sb
        if col == "fold":  # cross-validation: every pair across two folds is train/test in some fold
            leak = sa.notna() & sb.notna() & (sa != sb)
        else:
            leak = ((sa == "train") & (sb == "test")) | ((sa == "test") & (sb == "train"))
        frame[f"{col}_leak"] = leak
        leaks[col] = int(leak.sum())
    return leaks


def find_near_duplicates(
    emb_dir: str | Path,
    threshold: int = DEFAULT_THRESHOLD,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = True,
) -> DedupResult:
    """Near-duplicate pairs of the cells of an embedding folder (see the module docstring).

    Args:
        emb_dir: an embedding folder (``ssl-cyto embed``); its cells' images must be at ``root / path``.
        threshold: largest hash distance (of 256 bits) of a near-duplicate pair.
        candidates: nearest cells by embedding checked on the images per cell.
        progress: a line per stage on stderr.

    Returns:
        :class:`DedupResult`; ``pairs`` has :data:`PAIR_COLUMNS` (each unordered pair once).

    Raises:
        DedupError: an unreadable folder, bad options, or images that are not on disk.
    """
    t0 = time.time()
    if not 0 <= threshold <= 256:
        raise DedupError(f"--threshold must be between 0 and 256 bits, got {threshold}")
    if candidates < 1:
        raise DedupError(f"--candidates must be >= 1, got {candidates}")
    try:
        folder = read_embedding_folder(emb_dir)
    except SslCytoError as exc:
        raise DedupError(str(exc)) from exc
    cells = folder.cells.reset_index(drop=True)
    if len(cells) < 2:
        raise DedupError(f"{emb_dir}: {len(cells)} cell(s); near-duplicates need at least 2")
    stored = any(p.is_file() for p in hash_sources(folder.path, folder.embed))
    if not stored and not images_available(cells):
        first = image_paths(cells.iloc[:1])[0]
        raise DedupError(
            f"{first}: image not found; dedup compares the images at root / path of "
            f"{folder.path / 'cells.parquet'}: run it where the embedded images are"
        )
    x = normalize(np.asarray(folder.vectors, dtype=np.float32))
    if (folder.path / INDEX_FILE).is_file():
        index, _ = load_index(folder.path)
        how = f"the FAISS index {folder.path / INDEX_FILE}"
    else:
        index, _ = make_index(x, "flat", progress=False, normalized=True)
        how = "an exact in-memory FAISS index (no index.faiss: `ssl-cyto index build` makes one)"
    pairs, sims = _candidates(index, x, candidates, exclude_self=True)
    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    uniq, once = np.unique(lo * len(cells) + hi, return_index=True)
    pairs, sims = np.stack([lo[once], hi[once]], axis=1), sims[once]
    if progress:
        print(
            f"dedup: {len(uniq)} candidate pairs ({candidates} nearest per cell) from {how} "
            f"({time.time() - t0:.1f} s)",
            file=sys.stderr,
        )
    hashes, bad = cell_hashes(
        folder.path, cells, folder.embed, np.unique(pairs).tolist(), "dedup" if progress else None
    )
    pairs, sims, dist = _confirm(pairs, sims, hashes, threshold)
    frame = _pairs_frame(cells, pairs, sims, dist)
    leaks = _add_splits(frame, folder.path / SPLIT_FILE)
    if progress:
        print(
            f"dedup: {len(frame)} near-duplicate pairs confirmed ({time.time() - t0:.1f} s)", file=sys.stderr
        )
    return DedupResult(frame, len(cells), len(uniq), int(hashes.ok.sum()), bad, leaks, time.time() - t0)


def _train_candidates(x: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray, k: int) -> np.ndarray:
    """(test row, training row) pairs: each test cell's ``k`` nearest training cells (exact FAISS search)."""
    index, _ = make_index(normalize(x[train_rows]), "flat", progress=False, normalized=True)
    pairs, _ = _candidates(index, normalize(x[test_rows]), k, exclude_self=False)
    return np.stack([test_rows[pairs[:, 0]], train_rows[pairs[:, 1]]], axis=1)


def folds_leakage(
    x: np.ndarray,
    cells: pd.DataFrame,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    emb_dir: str | Path,
    embed_meta: dict | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    candidates: int = 5,
) -> dict[str, Any] | None:
    """Test cells with a near-duplicate among their fold's training cells, over the folds of a probe task.

    Each test cell's ``candidates`` nearest training cells (by embedding) are checked on the image
    hashes: the stored ones (:func:`ssl_cyto.evaluation.hash_store.cell_hashes`); a cell without one
    is hashed from its image once and kept.

    Returns:
        ``{"n_test", "n_test_with_duplicate", "threshold", "pairs": [(test cell_id, train cell_id,
        distance)...]}`` (at most 200 pairs), or ``None`` when a candidate cell has neither a stored
        hash nor its image on disk.
    """
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in folds if len(tr) and len(te)]
    per_fold = [_train_candidates(x, tr, te, candidates) for tr, te in folds]
    rows = np.unique(np.concatenate(per_fold)) if per_fold else np.zeros(0, dtype=np.int64)
    hashes, _ = cell_hashes(emb_dir, cells, embed_meta or {}, rows.tolist(), "probe")
    if len(rows) and not hashes.ok[rows].all():
        return None
    ids = cells["cell_id"].astype(str).to_numpy()
    found: list[tuple[str, str, int]] = []
    for pairs in per_fold:
        hit, _, dist = _confirm(pairs, np.zeros(len(pairs)), hashes, threshold)
        found += [(ids[i], ids[j], int(d)) for (i, j), d in zip(hit, dist, strict=True)]
    return {
        "n_test": int(sum(len(te) for _, te in folds)),
        "n_test_with_duplicate": len({a for a, _, _ in found}),
        "threshold": int(threshold),
        "pairs": found[:200],
    }


def leakage_warning(task_name: str, res: dict[str, Any] | None) -> str | None:
    """The probe's one-line warning for a :func:`folds_leakage` result (``None`` when there is nothing to say)."""
    if res is None or not res["n_test_with_duplicate"]:
        return None
    return (
        f"warning: {res['n_test_with_duplicate']} of {res['n_test']} test cells of {task_name} have a "
        f"near-duplicate among their training cells (perceptual-hash distance <= {res['threshold']}); "
        "their scores are optimistic: list the pairs with `ssl-cyto dedup EMB_DIR`"
    )
