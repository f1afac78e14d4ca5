"""Decoding cells for loading: WebDataset samples and image files to PIL RGB, and batch collation.

A corrupt image met at read time is skipped, never a crash: :func:`decode_sample` and
:func:`read_rgb` return None for it with a warning naming the file; :func:`check_sample` and
:func:`check_file` return the reason instead, for callers that count what they skip (the eval
stream of :mod:`ssl_cyto.data.loading.evaluation`). The collate functions drop failed reads.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ssl_cyto.data.images import ImageDecodeError, open_rgb

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")  # sample keys that hold the image, in order


def image_key(sample: dict) -> str | None:
    """The key of a WebDataset sample that holds its image (the first of :data:`IMAGE_KEYS`), or None."""
    for k in IMAGE_KEYS:
        if k in sample:
            return k
    return None


def decode_rgb(data: bytes, name: str) -> Image.Image:
    """Decode image bytes to PIL RGB with :func:`ssl_cyto.data.images.open_rgb` (errors name ``name``)."""
    return open_rgb(data, name=name)


def sample_name(sample: dict) -> str:
    """``<shard url>:<key>`` of a WebDataset sample, for messages."""
    return f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"


def check_sample(sample: dict) -> tuple[Image.Image, dict] | str:
    """``(PIL RGB image, catalog row)`` of a WebDataset sample, or the reason (naming it) it is bad."""
    name = sample_name(sample)
    ext = image_key(sample)
    if ext is None or "json" not in sample:
        return f"{name}: sample without image or json ({sorted(k for k in sample if not k.startswith('__'))})"
    try:
        row = json.loads(sample["json"])
        img = decode_rgb(bytes(sample[ext]), name=f"{name}.{ext}")
    except (ImageDecodeError, ValueError) as exc:  # ValueError: bad json (decode or syntax)
        return str(exc)
    return img, row


def decode_sample(sample: dict) -> tuple[Image.Image, dict] | None:
    """``(PIL RGB image, catalog row)`` of a WebDataset sample, or None (with a warning) if it is bad."""
    out = check_sample(sample)
    if isinstance(out, str):
        warnings.warn(f"{out}; skipped", stacklevel=2)
        return None
    return out


def check_file(path: str | os.PathLike) -> Image.Image | str:
    """Decode an image file, or return the reason (naming the file) it cannot be read."""
    try:
        return decode_rgb(Path(path).read_bytes(), name=str(path))
    except FileNotFoundError:
        return f"{path}: file not found"
    except (ImageDecodeError, OSError) as exc:
        return str(exc)


def read_rgb(path: str | os.PathLike) -> Image.Image | None:
    """Decode an image file, or return None with a warning naming the file."""
    out = check_file(path)
    if isinstance(out, str):
        warnings.warn(f"{out}; skipped", stacklevel=2)
        return None
    return out


def row_path(row: dict) -> str:
    """The image file of a catalog row (``root / path``)."""
    return str(Path(row["root"]) / row["path"])


def collate_views(samples: list[Any]) -> list[torch.Tensor]:
    """Stack per-view tensors: ``[views of cell 0, views of cell 1, ...]`` -> one ``(B, ...)`` tensor per view.

    A transform that returns a single tensor counts as one view.
    """
    if isinstance(samples[0], torch.Tensor):
        return [torch.stack(samples)]
    n_views = len(samples[0])
    return [torch.stack([s[v] for s in samples]) for v in range(n_views)]


def collate_eval(items: list[Any]) -> tuple[torch.Tensor, list[dict]] | None:
    """``[(tensor, row) | None, ...]`` -> ``(Tensor[B, ...], rows)``, dropping failed reads (None if all failed)."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]), [it[1] for it in items]
