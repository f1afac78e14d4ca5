"""Colour-histogram baseline: shapes, sums, known bins, HSV against colorsys."""

from __future__ import annotations

import colorsys

import pytest
import torch

from ssl_cyto.models.colour_hist import ColourHistogram, colour_histogram, rgb_to_hsv


def test_histogram_sums_and_shape() -> None:
    model = ColourHistogram()
    x = torch.rand(5, 3, 17, 13, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (5, 192) and out.dtype == torch.float32
    blocks = out.view(5, 6, 32).sum(-1)
    assert torch.allclose(blocks, torch.ones(5, 6), atol=1e-6)
    assert next(model.parameters()).numel() == 0
    assert not any(p.requires_grad for p in model.parameters())


def test_known_image_bins() -> None:
    # Left half pure red (1,0,0), right half mid grey (0.5,0.5,0.5); 4x4 image.
    img = torch.zeros(1, 3, 4, 4)
    img[0, 0, :, :2] = 1.0
    img[0, :, :, 2:] = 0.5
    h = colour_histogram(img).view(6, 32)
    expect = torch.zeros(6, 32)
    expect[0, 31] += 0.5  # R: red pixels at 1.0 -> last bin
    expect[0, 16] += 0.5  # R: grey 0.5 -> bin 16
    expect[1, 0] += 0.5  # G of red pixels
    expect[1, 16] += 0.5
    expect[2, 0] += 0.5
    expect[2, 16] += 0.5
    expect[3, 0] = 1.0  # hue of red = 0, hue of grey = 0 by convention
    expect[4, 31] += 0.5  # saturation of red = 1
    expect[4, 0] += 0.5  # saturation of grey = 0
    expect[5, 31] += 0.5  # value of red = 1
    expect[5, 16] += 0.5  # value of grey = 0.5
    assert torch.equal(h, expect)


def test_hsv_matches_colorsys() -> None:
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[0, :, 0, 0] = 0.3  # a grey pixel
    x[0, :, 0, 1] = 0.0  # black
    hsv = rgb_to_hsv(x)
    for i in range(8):
        for j in range(8):
            r, g, b = (float(v) for v in x[0, :, i, j])
            assert torch.allclose(
                hsv[0, :, i, j], torch.tensor(colorsys.rgb_to_hsv(r, g, b), dtype=torch.float64)
            )


def test_batched_equals_single_and_rejects_bad_shape() -> None:
    x = torch.rand(3, 3, 9, 9, generator=torch.Generator().manual_seed(2))
    batched = colour_histogram(x)
    for i in range(3):
        assert torch.equal(batched[i : i + 1], colour_histogram(x[i : i + 1]))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        colour_histogram(torch.rand(3, 9, 9))
