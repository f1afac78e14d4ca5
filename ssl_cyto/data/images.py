"""Decoding cell images into 8-bit RGB, whatever the file holds.

Cytomorphology files come as RGBA TIFF (AML-LMU), JPEG (BM-MLL, PBC) and occasionally as
grey-scale or 16-bit images. Every reader in the project goes through :func:`open_rgb`, so the
conversion rules live in one place:

* alpha is composited onto ``background`` (white by default, the colour of an empty smear);
* 16-bit and float images are scaled to 8 bit by their dtype range;
* grey-scale and palette images are expanded to RGB.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ssl_cyto.formats.errors import InputError

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_BACKGROUND = (255, 255, 255)
#: A cell image with a side under MIN_SIDE or over MAX_SIDE px is almost surely not one cell (a
#: thumbnail, an icon, a whole slide or tile): pack and embed count and list such images.
MIN_SIDE = 16
MAX_SIDE = 4096
#: The fix suggested for a file of a dataset that does not decode.
DATASET_HINT = "re-download or remove it"
_OBJECT_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>|<[\w.]+ object at 0x[0-9a-fA-F]+>")


class ImageDecodeError(InputError):
    """A file that cannot be decoded as an image (corrupt, truncated, empty or unknown format)."""


def size_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` px is unlikely to be one cell, or None when it looks fine."""
    if min(width, height) < MIN_SIDE:
        return f"{width}x{height} px: a side under {MIN_SIDE} px"
    if max(width, height) > MAX_SIDE:
        return f"{width}x{height} px: a side over {MAX_SIDE} px"
    return None


def _reason(exc: BaseException) -> str:
    """The message of a decoder's exception without the ``<_io.BytesIO object at 0x...>`` it may hold."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a known image format"
    text = _OBJECT_REPR.sub("the data", str(exc)).strip()
    return text or type(exc).__name__


def _from_array(arr: np.ndarray, background: tuple[int, int, int]) -> Image.Image:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer):
            arr = (arr.astype(np.float64) / np.iinfo(arr.dtype).max * 255.0).round().astype(np.uint8)
        else:
            arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 4:
        rgb = arr[..., :3].astype(np.float32)
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        bg = np.asarray(background, dtype=np.float32)
        arr = (rgb * alpha + bg * (1.0 - alpha)).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), mode="RGB")


def open_rgb(
    source: str | Path | bytes,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    name: str | None = None,
    hint: str = DATASET_HINT,
) -> Image.Image:
    """Decode an image file (or its bytes) fully into an 8-bit RGB PIL image.

    Args:
        source: a path or the raw bytes of the file.
        background: RGB colour that transparent pixels are composited onto.
        name: the file's name for error messages when ``source`` is bytes.
        hint: the fix the error message suggests (default: re-download or remove a dataset file;
            for a user's own image say e.g. "check that it is an image file").

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``RGB``.

    Raises:
        ImageDecodeError: the data is empty, truncated, corrupt or not an image; the message names
            the file.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) == 0:
        raise ImageDecodeError(f"{label}: empty file (0 bytes); {hint}")
    try:
        # Decoded from memory, so the image can be returned as loaded: no extra full-image copy.
        img = Image.open(io.BytesIO(data))
        img.load()
        if img.mode == "RGB" and "transparency" not in img.info:
            return img
        if img.mode in ("RGBA", "LA", "P", "PA", "RGB") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            return _from_array(np.asarray(rgba), background)
        if img.mode in ("L", "1", "CMYK", "YCbCr"):
            return img.convert("RGB")
        return _from_array(np.asarray(img), background)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # Pillow cannot read some TIFF flavours (e.g. 16-bit RGB); tifffile can.
        if label.lower().endswith((".tif", ".tiff")):
            try:
                return _from_array(tifffile.imread(io.BytesIO(data)), background)
            except Exception as tiff_exc:  # noqa: BLE001 - reported below with the file name
                raise ImageDecodeError(f"{label}: cannot decode TIFF ({_reason(tiff_exc)}); {hint}") from exc
        raise ImageDecodeError(f"{label}: cannot decode image ({_reason(exc)}); {hint}") from exc
