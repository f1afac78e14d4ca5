"""A generated cell folder with planted near-copies (re-encoded, flipped, slightly cropped), embedded."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from PIL import Image

from ssl_cyto.data.synth import synthesize


def _reencode(img: Image.Image, quality: int = 55) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _crop(img: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = img.size
    return img.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


# name -> (what it does to the original, file suffix)
EDITS = {
    "jpeg": (lambda im: _reencode(im), ".jpg"),
    "flip": (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ".png"),
    "rot90": (lambda im: im.transpose(Image.Transpose.ROTATE_90), ".png"),
    "crop5": (lambda im: _crop(im, 0.05, 0.05, 0.05, 0.05), ".png"),
    "crop8": (lambda im: _crop(im, 0.08, 0.075, 0.075, 0.08), ".png"),
    "crop6-jpeg-flip": (
        lambda im: _reencode(_crop(im, 0.06, 0.06, 0.055, 0.06).transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
        ".jpg",
    ),
    "resize-jpeg": (lambda im: _reencode(im.resize((im.width * 3 // 4, im.height * 3 // 4)), 70), ".jpg"),
}


def planted_tree(out: Path, seed: int, per_class: int = 14) -> tuple[Path, set[tuple[str, str]]]:
    """``out/tree/<class>/...``: generated cells plus one copy per edit of some originals.

    Returns:
        (the tree, the planted pairs as (original relative path, copy relative path)).
    """
    gen = synthesize(out / "gen", layout="folder", per_class=per_class, seed=seed)
    tree = out / "tree"
    originals = sorted(p for p in gen.rglob("*.png"))
    for p in originals:
        dst = tree / p.relative_to(gen)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
    planted = set()
    for n, (name, (edit, suffix)) in enumerate(EDITS.items()):
        for rep in range(2):
            src = originals[(n * 2 + rep) * 5 % len(originals)]
            rel = src.relative_to(gen)
            copy = rel.parent / f"{rel.stem}_{name}{suffix}"
            edit(Image.open(src).convert("RGB")).save(tree / copy)
            planted.add((rel.as_posix(), copy.as_posix()))
    return tree, planted
