"""``ssl-cyto dedup``'s outputs: ``pairs.csv`` and ``pairs.png`` (a contact sheet of the pairs).

The sheet draws one row per pair, the first cell on the left and its near-duplicate on the right,
captioned with the cell file names, labels, hash distance and cosine similarity, through the
similar-cells gallery renderer (:func:`ssl_cyto.retrieval.gallery.save_gallery`). Pairs are drawn
closest first, at most ``max_pairs`` of them; the CSV holds all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ssl_cyto.evaluation.dedup import DedupResult
from ssl_cyto.retrieval.gallery import Tile, frame_for, save_gallery

__all__ = ["PAIRS_CSV", "PAIRS_PNG", "write_dedup_outputs"]

PAIRS_CSV = "pairs.csv"
PAIRS_PNG = "pairs.png"


def _tile(cells: pd.DataFrame, cell_id: str, caption: str, frame: str | None) -> Tile:
    row = cells.loc[cell_id]
    return Tile(Path(str(row["root"])) / str(row["path"]), caption, frame)


def _name(cell_id: str, width: int = 24) -> str:
    tail = str(cell_id).rsplit("/", 1)[-1]
    return tail if len(tail) <= width else "…" + tail[-(width - 1) :]


def write_dedup_outputs(
    result: DedupResult, cells: pd.DataFrame, out_dir: str | Path, max_pairs: int = 40
) -> dict:
    """Write ``pairs.csv`` (always) and ``pairs.png`` (when there are pairs); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / PAIRS_CSV
    result.pairs.to_csv(csv, index=False)
    written: dict = {"csv": str(csv), "png": None}
    if len(result.pairs):
        by_id = cells.set_index("cell_id")
        rows = []
        for r in result.pairs.head(max_pairs).itertuples(index=False):
            a = _tile(by_id, r.cell_id_a, f"{_name(r.cell_id_a)}\n{r.label_a} · {r.source_a}", None)
            b = _tile(
                by_id,
                r.cell_id_b,
                f"{_name(r.cell_id_b)}\n{r.label_b} · d={r.hash_distance} · cos={r.cosine:.3f}",
                frame_for(r.label_a, r.label_b),
            )
            rows.append((a, [b]))
        title = f"near-duplicate pairs ({len(result.pairs)}; first {len(rows)}, closest first)"
        written["png"] = str(save_gallery(rows, out / PAIRS_PNG, title=title, tile_inches=1.6, fontsize=7))
    return written
