"""A perceptual hash of cell images that ignores orientation and small crops: ``ssl-cyto dedup``'s check.

Computed once per cell where the image is already decoded: by ``ssl-cyto pack`` on the image as
packed (the decoded, resized pixels written to the shard), stored beside ``index.json``, and by
``ssl-cyto embed`` of an image folder in its loader, stored beside the embeddings
(:mod:`ssl_cyto.formats.image_hashes`); ``probe`` and ``dedup`` read the stored hashes and hash only
cells that have none (keeping the result beside the embeddings).

The hash is the DCT perceptual hash (pHash; Zauner 2010, "Implementation and benchmarking of
perceptual image hash functions"; the ``phash`` of the ``imagehash`` package) at a finer grain: the
image in grey levels resized to 64 x 64, its 2-D DCT-II, the 16 x 16 lowest frequencies compared
with their median -> 256 bits. The 8 x 8 version (64 bits) cannot tell generated cells of one class
apart (unrelated pairs at 6 bits), the 16 x 16 one puts them at 60 bits or more while a re-encoded
copy stays under 8 (measured in ``tests/evaluation/test_dedup.py``'s set).

Each image gets two sets of hashes (:class:`ImageHash`):

* ``turns``: the whole image in its 8 orientations (4 rotations, each mirrored): a cell on a smear
  has no orientation, and datasets are augmented by flips and rotations;
* ``windows``: sub-windows as given, at scales :data:`WINDOW_SCALES` of the side, each at 5 x 5
  positions (from corner to corner in quarter steps): a copy cropped by a few percent is about one
  of these windows, resized. Crops off-centre by more than about 1% of the side between two grid
  positions, or crops that change the aspect ratio, can fall above the threshold: the check is
  built for re-encoded, resized, flipped, rotated and lightly cropped copies.

The distance of two images (:func:`hash_distance`) is the smallest Hamming distance between one
image's turns and the other's windows (the whole image is window 0), both ways round. Written with
PIL and numpy (the DCT is a matrix product on each side) rather than adding a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "HASH_BITS",
    "HASH_BYTES",
    "WINDOW_SCALES",
    "ImageHash",
    "hash_distance",
    "image_hash",
    "phash_hex",
]

_SIZE = 64
_LOW = 16
HASH_BITS = _LOW * _LOW
"""Bits of one hash."""
WINDOW_SCALES = (0.95, 0.9, 0.85)
"""Side of the sub-windows hashed, as a fraction of the image side (a crop of up to ~8% a side)."""


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix ``D`` (``D @ x`` is the DCT of the column vector ``x``)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


_DCT = _dct_matrix(_SIZE)
_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


_DCT_LOW = np.ascontiguousarray(_DCT[:_LOW])
N_TURNS = 8
N_WINDOWS = 1 + len(WINDOW_SCALES) * len(_POSITIONS) ** 2
HASH_BYTES = (N_TURNS + N_WINDOWS) * HASH_BITS // 8
"""Bytes of one :class:`ImageHash` as stored (:meth:`ImageHash.to_bytes`)."""


@dataclass(frozen=True)
class ImageHash:
    """The hashes of one image: ``turns`` (8, 256) and ``windows`` (1 + 75, 256) bits, packed to bytes.

    ``phash`` is the 64-bit DCT hash of the whole image (the 8 x 8 lowest frequencies of the same
    64 x 64 grey image against their median, as ``imagehash.phash``) as 16 hex characters: a short
    key for exact-copy look-ups; the near-duplicate check uses ``turns`` and ``windows``.
    """

    turns: np.ndarray
    windows: np.ndarray
    phash: str = ""

    def to_bytes(self) -> bytes:
        """``turns`` then ``windows``, :data:`HASH_BYTES` bytes."""
        return self.turns.tobytes() + self.windows.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, phash: str = "") -> ImageHash:
        """The inverse of :meth:`to_bytes`."""
        a = np.frombuffer(data, dtype=np.uint8).reshape(N_TURNS + N_WINDOWS, HASH_BITS // 8)
        return cls(a[:N_TURNS], a[N_TURNS:], phash)


def _bits_batch(greys: np.ndarray) -> np.ndarray:
    """Packed hash bits of a stack of grey images (B, 64, 64): one batched DCT of the low frequencies."""
    low = _DCT_LOW @ greys @ _DCT_LOW.T  # (B, 16, 16)
    flat = low.reshape(len(greys), -1)
    return np.packbits(flat > np.median(flat, axis=1, keepdims=True), axis=1)


def _phash64(grey: np.ndarray) -> str:
    low = (_DCT[:8] @ grey @ _DCT[:8].T).ravel()
    return np.packbits(low > np.median(low)).tobytes().hex()


def _grey(image: Image.Image, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    small = image.resize((_SIZE, _SIZE), Image.Resampling.BILINEAR, box=box)
    return np.asarray(small, dtype=np.float64)


def _reduced_grey(image: Image.Image) -> Image.Image:
    grey_img = image.convert("L")
    if min(grey_img.size) > 2 * _SIZE:
        grey_img = grey_img.resize((2 * _SIZE, 2 * _SIZE), Image.Resampling.LANCZOS)
    return grey_img


def phash_hex(image: Image.Image) -> str:
    """The 64-bit whole-image hash of :func:`image_hash` (``ImageHash.phash``) alone, 16 hex characters:
    what pack stores as ``phash`` and serve looks an upload up by."""
    return _phash64(_grey(_reduced_grey(image)))


def image_hash(image: Image.Image) -> ImageHash:
    """The :class:`ImageHash` of ``image`` (any mode; hashed in grey levels)."""
    # one LANCZOS reduction to twice the hash grid, then bilinear windows cut from those 128 px rather
    # than LANCZOS from the full image: ~2x faster on PBC's 360 px cells, the same planted-copy and
    # unrelated-pair distances within 2 bits on the test sets
    grey_img = _reduced_grey(image)
    whole = _grey(grey_img)
    w, h = grey_img.size
    greys = [np.rot90(m, r) for m in (whole, whole[:, ::-1]) for r in range(4)]
    for s in WINDOW_SCALES:
        cw, ch = w * s, h * s
        for fy in _POSITIONS:
            for fx in _POSITIONS:
                x0, y0 = fx * (w - cw), fy * (h - ch)
                greys.append(_grey(grey_img, (x0, y0, x0 + cw, y0 + ch)))
    bits = _bits_batch(np.stack(greys))
    return ImageHash(bits[:N_TURNS], np.concatenate([bits[:1], bits[N_TURNS:]]), _phash64(whole))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _min_hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(_POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.int64).min())


def hash_distance(a: ImageHash, b: ImageHash) -> int:
    """Smallest Hamming distance (0..256) between one image in any orientation and the other's windows."""
    return min(_min_hamming(a.turns, b.windows), _min_hamming(b.turns, a.windows))
