"""Writing one shard: bad files are skipped with their reason, odd images converted, JPEGs passed through."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_cyto.data.packing import pack
from ssl_cyto.data.verification import verify
from tests.data.packing_support import cells_by_id, hand_catalog, rgb_noise, save


def test_bad_files_are_skipped_and_odd_images_converted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    save(rgb_noise(0), src / "good.png")
    save(rgb_noise(1), src / "good.jpg", quality=90)
    jpeg = (src / "good.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "garbage.png").write_bytes(b"this is not an image" * 20)
    grey = np.arange(24 * 20, dtype=np.uint8).reshape(24, 20)
    save(Image.fromarray(grey, mode="L"), src / "grey.png")
    g16 = (np.arange(24 * 20, dtype=np.uint16) * 137).reshape(24, 20)
    save(Image.fromarray(g16), src / "grey16.png")
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :6, 3] = 255  # left half opaque red, right half transparent -> white
    save(Image.fromarray(rgba, mode="RGBA"), src / "alpha.png")
    save(Image.fromarray(grey, mode="L"), src / "grey.jpg")  # grey JPEG: converted, not passed through
    files = sorted(p.name for p in src.iterdir()) + ["missing.jpg"]
    cat = hand_catalog(src, files)
    cat.loc[cat["path"] == "good.png", "sha256"] = "0" * 64  # wrong checksum -> skipped too

    index = pack(cat, tmp_path / "out", shard_size=4, progress=False)
    skipped = {Path(s["path"]).name: s["reason"] for s in index["skipped"]}
    assert set(skipped) == {"truncated.jpg", "empty.jpg", "garbage.png", "missing.jpg", "good.png"}
    assert "empty" in skipped["empty.jpg"] and "not found" in skipped["missing.jpg"]
    assert "sha256" in skipped["good.png"]
    assert all(str(src) in s["path"] for s in index["skipped"])
    assert index["total_cells"] == len(files) - 5
    assert verify(tmp_path / "out", decode=True, progress=False)["ok"]

    cells = {Path(c).name: v for c, v in cells_by_id(tmp_path / "out").items()}
    assert cells["good.jpg"]["jpg"] == jpeg
    for name in ("grey.png", "grey16.png", "alpha.png", "grey.jpg"):
        assert set(cells[name]) == {"png", "json", "row"}, name
    g = np.asarray(Image.open(io.BytesIO(cells["grey.png"]["png"])))
    assert g.shape == (24, 20, 3) and np.array_equal(g[..., 1], grey)
    g16_back = np.asarray(Image.open(io.BytesIO(cells["grey16.png"]["png"])))
    assert g16_back.dtype == np.uint8 and g16_back.shape == (24, 20, 3)
    assert np.array_equal(g16_back[..., 0], np.round(g16 / 65535 * 255).astype(np.uint8))
    a = np.asarray(Image.open(io.BytesIO(cells["alpha.png"]["png"])))
    assert a[0, 0].tolist() == [200, 0, 0] and a[0, -1].tolist() == [255, 255, 255]
