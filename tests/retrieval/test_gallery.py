"""The similar-cells gallery PNG."""

from __future__ import annotations

from pathlib import Path

from ssl_cyto.retrieval.gallery import Tile, render_gallery, save_gallery


def test_gallery_tile_count_and_size(tmp_path: Path) -> None:
    from PIL import Image

    img = Image.new("RGB", (40, 30), (200, 120, 180))
    rows = [
        (Tile(img, "query\nA", "#1f5fbf"), [Tile(img, f"#{j + 1} A\nsim 0.9") for j in range(4)]),
        (Tile(img, "query\nB"), [Tile(tmp_path / "missing.png", "#1 ?")] + [Tile(img, "x")] * 2),
    ]
    fig = render_gallery(rows, tile_inches=1.0, dpi=50)
    assert len(fig.axes) == (1 + 4) + (1 + 3)
    out = save_gallery(rows, tmp_path / "g.png", tile_inches=1.0, dpi=50)
    w, h = Image.open(out).size
    assert w == round(1.0 * (5 + 0.25) * 50) and h > 2 * 50
