"""Cytology transforms: view counts and shapes, value ranges, background-coloured rotation fill."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ssl_cyto.transforms import (
    BackgroundRotation,
    CellAugment,
    DecodeOnly,
    DeviceViews,
    DINOViews,
    EvalTransform,
    SimCLRViews,
    ViewSpec,
    border_colour,
    rotate_with_background,
)

BG = (222, 190, 205)  # pinkish smear background


def cell_image(size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), BG)
    d = ImageDraw.Draw(img)
    d.ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(90, 40, 140))
    return img


def test_border_colour():
    assert border_colour(cell_image()) == BG


def test_rotation_fills_corners_with_background_not_black():
    random.seed(0)
    img = cell_image(64)
    rot = BackgroundRotation(degrees=180.0, p=1.0)
    for _ in range(5):
        a = np.asarray(rot(img)).astype(int)
        for corner in (a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]):
            assert np.abs(corner - np.array(BG)).max() <= 2
    # a rotation by 45 degrees without our fill would put black in the corners
    plain = np.asarray(img.rotate(45))
    assert plain[0, 0].max() == 0


def test_simclr_views_shapes_and_range():
    views = SimCLRViews(input_size=32)(cell_image())
    assert len(views) == 2
    mean = torch.tensor(CellAugment().mean).view(3, 1, 1)
    std = torch.tensor(CellAugment().std).view(3, 1, 1)
    for v in views:
        assert v.shape == (3, 32, 32) and v.dtype == torch.float32
        raw = v * std + mean
        assert float(raw.min()) >= -1e-4 and float(raw.max()) <= 1 + 1e-4


def test_dino_views_multicrop():
    views = DINOViews(input_size=32, local_size=16, n_local=3)(cell_image())
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3


def test_views_differ_and_keep_colour_by_default():
    torch.manual_seed(0)
    random.seed(0)
    a, b = SimCLRViews(input_size=32)(cell_image())
    assert not torch.allclose(a, b)
    # no grayscale by default: channels stay distinct somewhere
    assert float((a[0] - a[1]).abs().max()) > 0.1
    grey = SimCLRViews(input_size=32, aug=CellAugment(grayscale_p=1.0, jitter=0.0, hue=0.0))(cell_image())[0]
    std = torch.tensor(CellAugment().std).view(3, 1, 1)
    mean = torch.tensor(CellAugment().mean).view(3, 1, 1)
    raw = grey * std + mean
    assert torch.allclose(raw[0], raw[1], atol=1e-5)


def test_eval_transform_is_deterministic_centre_crop():
    t = EvalTransform(24)
    img = Image.new("RGB", (80, 40), BG)
    x1, x2 = t(img), t(img)
    assert x1.shape == (3, 24, 24) and torch.equal(x1, x2)


def test_decode_only_then_device_views():
    pytest.importorskip("kornia")
    x = torch.stack([DecodeOnly(40)(cell_image(64))[0] for _ in range(3)])
    assert x.dtype == torch.uint8 and x.shape == (3, 3, 40, 40)
    dv = DeviceViews([ViewSpec(32, (0.4, 1.0), 0.5), ViewSpec(32), ViewSpec(16, (0.1, 0.4), 0.5)])
    views = dv(x)
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 32), (3, 3, 32, 32), (3, 3, 16, 16)]
    assert all(torch.isfinite(v).all() for v in views)


def test_device_rotation_fill_is_background():
    pytest.importorskip("kornia")
    x = torch.stack([DecodeOnly(64)(cell_image(64))[0]]).float() / 255.0
    torch.manual_seed(1)
    r = rotate_with_background(x.repeat(4, 1, 1, 1))
    bg = torch.tensor(BG, dtype=torch.float32).view(1, 3) / 255.0
    for corner in (r[:, :, 0, 0], r[:, :, -1, -1], r[:, :, 0, -1], r[:, :, -1, 0]):
        assert torch.allclose(corner, bg.expand_as(corner), atol=0.02)
