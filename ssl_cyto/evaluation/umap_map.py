"""``ssl-cyto umap``: 2-D UMAP maps of an embedding folder, coloured by class and by source.

UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426) with ``n_neighbors=15`` and the cosine
metric, seeded. Two PNGs: one coloured by expert class (does the embedding group the experts'
classes?) and one by source (do datasets / scanners / batches form separate islands? A map that
splits by source more than by class shows a dataset effect the encoder did not remove).

Every cell is on the map. UMAP is fitted on at most ``--max-points`` cells (default 20,000), a
sample stratified by (source, label) in which each stratum keeps its share and at least one cell;
the other cells are then placed on the fitted map with ``UMAP.transform`` (the documented way of
embedding new points into an existing UMAP), in blocks of :data:`TRANSFORM_BLOCK` cells, so the cost
grows linearly with the number of cells beyond the sample. ``--sample-only`` draws the fitted sample
alone (the former behaviour). The number of points drawn is in each figure's title. The 2-D
coordinates are saved as ``umap.parquet`` (cell_id, source, label, x, y, fitted) beside the PNGs and
``report.md``. When a wandb run is active in this process (``wandb.run is not None``), both images
are logged to it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssl_cyto.evaluation.report import markdown_table, write_report
from ssl_cyto.formats.embeddings import read_embedding_folder
from ssl_cyto.formats.errors import InputError, SslCytoError
from ssl_cyto.formats.outputs import check_output_dir
from ssl_cyto.formats.progress import Stages

__all__ = ["TRANSFORM_BLOCK", "UNLABELLED", "UmapError", "stratified_subsample", "umap_map"]

UNLABELLED = "(unlabelled)"
TRANSFORM_BLOCK = 20000
"""Cells placed on the fitted map per ``UMAP.transform`` call (bounds its memory)."""


class UmapError(InputError):
    """Bad input to ``ssl-cyto umap`` (missing files, too few cells)."""


def stratified_subsample(strata: Sequence[str], max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of at most ``max_points`` rows, each stratum keeping its share (>= 1 row).

    Every stratum gets ``max(1, floor(max_points * n_s / n))`` rows (capped at ``n_s``); if that
    overshoots (many tiny strata), the largest strata give rows back. All rows when ``n <= max_points``.
    """
    s = np.asarray(strata, dtype=object)
    n = len(s)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    names, inverse, counts = np.unique(s.astype(str), return_inverse=True, return_counts=True)
    take = np.minimum(counts, np.maximum(1, (max_points * counts) // n))
    while take.sum() > max_points and (take > 1).any():
        take[np.argmax(take)] -= 1
    chosen = [
        rng.choice(np.flatnonzero(inverse == i), size=int(t), replace=False) for i, t in enumerate(take)
    ]
    return np.sort(np.concatenate(chosen))


def _palette(n: int) -> list:
    if n <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    colours = [matplotlib.colormaps["tab20"](i) for i in range(20)]
    colours += [matplotlib.colormaps["tab20b"](i) for i in range(20)]
    colours += [matplotlib.colormaps["tab20c"](i) for i in range(20)]
    if n > len(colours):
        hsv = matplotlib.colormaps["hsv"]
        colours += [hsv(i / (n - len(colours))) for i in range(n - len(colours))]
    return colours[:n]


def _scatter(xy: np.ndarray, groups: np.ndarray, title: str, path: Path) -> Path:
    names, counts = np.unique(groups.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")  # big groups drawn first, small ones on top
    colours = _palette(len(names))
    ncol = 1 if len(names) <= 20 else 2
    fig = Figure(figsize=(8 + 2.2 * ncol, 8))
    ax = fig.subplots()
    size = float(np.clip(20000 / max(len(xy), 1), 0.2, 25.0))
    handles: dict[int, Any] = {}
    for i in order:
        m = groups.astype(str) == names[i]
        handles[i] = ax.scatter(
            xy[m, 0],
            xy[m, 1],
            s=size,
            color=colours[i],
            alpha=0.7,
            linewidths=0,
            label=f"{names[i]} ({counts[i]})",
            rasterized=True,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(f"{title}\n{len(xy):,} cells drawn", fontsize=11)
    ax.legend(
        [handles[i] for i in range(len(names))],  # alphabetical, whatever the drawing order
        [f"{names[i]} ({counts[i]})" for i in range(len(names))],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncol=ncol,
        fontsize=8,
        markerscale=max(1.0, 6 / size**0.5),
        frameon=False,
        title="(cells shown)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _log_wandb(paths: dict[str, Path]) -> bool:
    wandb = sys.modules.get("wandb")  # no run can be active unless wandb was imported already
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    wandb.log({f"umap/{key}": wandb.Image(str(p)) for key, p in paths.items()})
    return True


def _umap_module() -> Any:
    """umap-learn, imported on use: it is optional, and its import JIT-compiles for tens of seconds."""
    try:
        return importlib.import_module("umap")
    except ImportError as exc:
        raise UmapError("ssl-cyto umap needs umap-learn: pip install umap-learn") from exc


def _fit_and_place(
    x: np.ndarray, fit_rows: np.ndarray, k: int, seed: int, sample_only: bool, stages: Stages
) -> tuple[np.ndarray, np.ndarray]:
    """Fit UMAP on ``x[fit_rows]``; place the other rows with ``transform``. Returns (rows drawn, xy)."""
    umap_learn = _umap_module()
    reducer = umap_learn.UMAP(
        n_neighbors=k, n_components=2, metric="cosine", random_state=seed, n_jobs=1, verbose=False
    )
    fitted = np.asarray(reducer.fit_transform(np.asarray(x[fit_rows], dtype=np.float32)))
    rest = np.setdiff1d(np.arange(len(x)), fit_rows)
    if sample_only or not len(rest):
        return fit_rows, fitted
    xy = np.zeros((len(x), 2), dtype=np.float32)
    xy[fit_rows] = fitted
    for start in range(0, len(rest), TRANSFORM_BLOCK):
        block = rest[start : start + TRANSFORM_BLOCK]
        stages(f"placing cells {start + 1}-{start + len(block)} of the {len(rest)} not in the fit")
        xy[block] = np.asarray(reducer.transform(np.asarray(x[block], dtype=np.float32)))
    return np.arange(len(x)), xy


def _map_body(
    k: int, seed: int, n_fit: int, n_drawn: int, n_cells: int, max_points: int, counts: list
) -> str:
    placed = (
        f"UMAP fitted on {n_fit} cells (stratified by (source, label), at most {max_points}); "
        + (
            f"the other {n_drawn - n_fit} placed on the fitted map with `UMAP.transform`. "
            if n_drawn > n_fit
            else ""
        )
        + f"{n_drawn} of {n_cells} cells drawn."
    )
    return (
        f"UMAP (McInnes et al. 2018): n_neighbors={k}, metric=cosine, 2 components, random_state={seed}. "
        + placed
        + "\n\nHow to read: islands by class mean the encoder separates the experts' classes without labels; "
        "islands by source (with the classes mixed inside) mean a dataset or batch effect. Distances between "
        "islands are not meaningful in UMAP; neighbourhoods are.\n\n" + markdown_table(counts)
    )


def umap_map(
    emb_dir: str | Path,
    max_points: int = 20000,
    seed: int = 0,
    out: str | Path | None = None,
    n_neighbors: int = 15,
    command: str | Sequence[str] | None = None,
    sample_only: bool = False,
) -> dict[str, Any]:
    """Compute a 2-D UMAP of every cell of an embedding folder; write PNGs by class and by source + report.md.

    Args:
        emb_dir: folder written by ``ssl-cyto embed``.
        max_points: cells UMAP is fitted on (a sample stratified by source and label); the others are
            placed on the fitted map.
        seed: seed of the sample and of UMAP.
        out: output folder (default ``EMB_DIR/umap``).
        n_neighbors: UMAP neighbourhood size (15; lowered for tiny inputs).
        command: command line shown at the top of the report (default: this process's argv).
        sample_only: draw only the fitted sample.

    Returns:
        ``{"by_class": png, "by_source": png, "coords": parquet, "report": md, "n_points": int (drawn),
        "n_fit": int, "n_cells": int, "wandb": bool}``.
    """
    stages = Stages("umap")
    emb_dir = Path(emb_dir)
    out_dir = check_output_dir(Path(out) if out else emb_dir / "umap", "--out")
    try:
        folder = read_embedding_folder(emb_dir)
    except SslCytoError as exc:
        raise UmapError(str(exc)) from exc
    feats, cells, meta, embed_meta = folder.vectors, folder.cells, folder.model, folder.embed
    if max_points < 4:
        raise UmapError(f"--max-points must be at least 4, got {max_points}")
    if len(cells) < 4:
        raise UmapError(f"{emb_dir} holds {len(cells)} cells; UMAP needs at least 4")
    labels = np.array(
        [str(v) if v is not None and v == v and str(v).strip() else UNLABELLED for v in cells["label"]],
        dtype=object,
    )
    sources = cells["source"].astype(str).to_numpy(dtype=object)
    fit_rows = stratified_subsample(sources + "\x1f" + labels, max_points, seed)
    k = int(min(n_neighbors, len(fit_rows) - 1))
    stages(f"UMAP fitted on {len(fit_rows)} of {len(cells)} cells, n_neighbors={k}, cosine")
    keep, xy = _fit_and_place(feats, fit_rows, k, seed, sample_only, stages)
    stages("UMAP done; drawing the maps")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{meta.get('method') or 'model'} ({meta.get('architecture') or 'unknown'})"
    by_class = _scatter(xy, labels[keep], f"UMAP of {name}, by expert class", out_dir / "umap_by_class.png")
    by_source = _scatter(xy, sources[keep], f"UMAP of {name}, by source", out_dir / "umap_by_source.png")
    coords = out_dir / "umap.parquet"
    pd.DataFrame(
        {
            "cell_id": cells["cell_id"].to_numpy()[keep],
            "source": sources[keep],
            "label": labels[keep],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "fitted": np.isin(keep, fit_rows),
        }
    ).to_parquet(coords, index=False)
    logged = _log_wandb({"by_class": by_class, "by_source": by_source})
    counts = (
        pd.DataFrame({"source": sources[keep], "label": labels[keep]})
        .value_counts()
        .sort_index()
        .reset_index(name="cells shown")
        .to_dict("records")
    )
    report = write_report(
        out_dir / "report.md",
        title=f"UMAP of {name}",
        command=command,
        data=f"{emb_dir} ({len(cells)} cells, {meta.get('embed_dim') or feats.shape[1]}-d)"
        + (f"; embedded from {embed_meta.get('data')}" if embed_meta.get("data") else ""),
        sections=[("Map", _map_body(k, seed, len(fit_rows), len(keep), len(cells), max_points, counts))],
        figures=[by_class, by_source],
    )
    stages(f"wrote {report}")
    return {
        "by_class": str(by_class),
        "by_source": str(by_source),
        "coords": str(coords),
        "report": str(report),
        "n_points": int(len(keep)),
        "n_fit": int(len(fit_rows)),
        "n_cells": int(len(cells)),
        "wandb": logged,
    }
