"""The similar-cells gallery: one row per query, the query on the left, its neighbours to the right.

Each tile shows the cell image with a caption under it (rank, label, cosine similarity). Query
tiles get a blue frame; neighbour frames are green when the neighbour's label equals the query's
label and red when it differs (no colour when either label is unknown); a legend under the title
says so. Images that cannot be read
are drawn as a grey tile saying why, so one missing file never hides the rest of the figure.

matplotlib is used through its object API (``Figure`` + Agg canvas), not ``pyplot``: no global
state, no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from ssl_cyto.data.images import ImageDecodeError, open_rgb
from ssl_cyto.formats.errors import InputError

__all__ = [
    "MATCH_COLOUR",
    "LEGEND",
    "MISMATCH_COLOUR",
    "QUERY_COLOUR",
    "Tile",
    "frame_for",
    "render_gallery",
    "save_gallery",
]

QUERY_COLOUR = "#1f5fbf"
MATCH_COLOUR = "#2a9d3a"
MISMATCH_COLOUR = "#c8322d"
THUMB_PX = 192
LEGEND = (
    (QUERY_COLOUR, "query"),
    (MATCH_COLOUR, "same label as the query"),
    (MISMATCH_COLOUR, "different label"),
    ("none", "no frame: a label is unknown"),
)


@dataclass
class Tile:
    """One image of the gallery.

    Attributes:
        image: a path, raw bytes, a PIL image, or ``None`` (drawn as a grey "no image" tile).
        caption: text under the image (use ``\\n`` for a second line).
        frame: frame colour (any matplotlib colour) or ``None`` for no frame.
    """

    image: Any
    caption: str
    frame: str | None = None


def _thumbnail(image: Any) -> tuple[Image.Image | None, str | None]:
    """A small RGB thumbnail, or ``(None, reason)`` when the image cannot be read."""
    if image is None:
        return None, "no image"
    try:
        if hasattr(image, "convert"):  # a PIL image
            img = image.convert("RGB")
        else:
            if not isinstance(image, bytes) and not Path(image).exists():
                return None, "image not found"
            img = open_rgb(image)
    except (ImageDecodeError, OSError) as exc:
        return None, f"unreadable: {type(exc).__name__}"
    img = img.copy()
    img.thumbnail((THUMB_PX, THUMB_PX))
    return img, None


def render_gallery(
    rows: Sequence[tuple[Tile, Sequence[Tile]]],
    tile_inches: float = 1.9,
    dpi: int = 100,
    fontsize: float = 9.0,
    title: str | None = None,
    legend: bool = True,
) -> Figure:
    """Lay out queries and their neighbours as a grid figure.

    Args:
        rows: per query, ``(query_tile, neighbour_tiles)``; rows may have different lengths.
        tile_inches: width of one tile in inches (the caption adds height below it).
        dpi: resolution of the saved PNG.
        fontsize: caption font size in points (9 pt at 1.9 in per tile stays legible in a README).
        title: optional figure title.
        legend: draw the legend of the frame colours under the title.

    Returns:
        A matplotlib ``Figure`` with exactly ``sum(1 + len(neighbours))`` axes (one per tile).
    """
    if not rows:
        raise InputError("render_gallery: no rows to draw (give at least one query)")
    ncols = 1 + max(len(n) for _, n in rows)
    gap = 0.25  # blank column between the query and its neighbours, in tile widths
    caption_in = 0.62 * fontsize / 9.0
    width = tile_inches * (ncols + gap)
    head = (0.45 if title else 0.1) + (0.3 if legend else 0.0)
    height = len(rows) * (tile_inches + caption_in) + head
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        len(rows),
        ncols + 1,
        width_ratios=[1.0, gap] + [1.0] * (ncols - 1),
        left=0.01,
        right=0.99,
        top=1 - head / height,
        bottom=caption_in / height * 0.9,
        hspace=caption_in / tile_inches * 1.1,
        wspace=0.06,
    )
    if title:
        fig.suptitle(title, fontsize=fontsize + 2, y=1 - 0.08 / height, va="top")
    if legend:
        handles = [
            Patch(facecolor="none", edgecolor=colour, linewidth=0 if colour == "none" else 2.5, label=text)
            for colour, text in LEGEND
        ]
        fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 1 - (0.45 if title else 0.1) / height),
            ncol=len(handles),
            fontsize=fontsize,
            frameon=False,
        )
    for r, (query, neighbours) in enumerate(rows):
        cells = [(0, query)] + [(j + 2, t) for j, t in enumerate(neighbours)]
        for col, tile in cells:
            ax = fig.add_subplot(grid[r, col])
            thumb, reason = _thumbnail(tile.image)
            if thumb is None:
                ax.imshow(np.full((8, 8, 3), 0.85))
                ax.text(
                    0.5,
                    0.5,
                    reason or "",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    transform=ax.transAxes,
                )
            else:
                ax.imshow(np.asarray(thumb))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(tile.caption, fontsize=fontsize, labelpad=2, linespacing=1.1)
            for spine in ax.spines.values():
                if tile.frame:
                    spine.set_edgecolor(tile.frame)
                    spine.set_linewidth(3.0)
                else:
                    spine.set_visible(False)
    return fig


def save_gallery(rows: Sequence[tuple[Tile, Sequence[Tile]]], out: str | Path, **kwargs: Any) -> Path:
    """Render :func:`render_gallery` to a PNG (parent folders are created) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = render_gallery(rows, **kwargs)
    fig.savefig(out, format="png", dpi=fig.dpi)
    return out


def frame_for(query_label: Any, neighbour_label: Any) -> str | None:
    """Green when the labels match, red when they differ, ``None`` when either is unknown."""

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and v != v)

    if missing(query_label) or missing(neighbour_label):
        return None
    return MATCH_COLOUR if query_label == neighbour_label else MISMATCH_COLOUR
