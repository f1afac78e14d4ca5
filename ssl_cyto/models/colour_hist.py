"""The colour-histogram "encoder" (backbone name ``colour_hist``): the floor every model must beat.

On stained blood cells colour alone is a strong cue (May-Grünwald-Giemsa staining colours granules,
nuclei and cytoplasm differently per lineage), so a representation must beat a plain colour
histogram before it can claim to have learned morphology. :class:`ColourHistogram` is that floor:
32 bins per channel of RGB and HSV (6 x 32 = 192 features), each channel's 32 bins normalised to
sum to 1. It has no trainable weights and runs batched on whatever device its input is on.

It is fed raw [0, 1] pixels (mean 0, std 1 in its ``model.json``; see
:func:`ssl_cyto.models.factory.backbone_norm`), so ``ssl-cyto embed --model colour_hist`` gives the
floor through the same code path as any encoder. Z-scoring with the training-split statistics
happens in the probe, never here.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HIST_BINS", "HIST_CHANNELS", "ColourHistogram", "colour_histogram", "rgb_to_hsv"]

HIST_BINS = 32
HIST_CHANNELS = ("R", "G", "B", "H", "S", "V")


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Convert RGB in [0, 1], shape (B, 3, H, W), to HSV with every channel in [0, 1].

    Hue is ``degrees / 360``; hue of a grey pixel (max == min) is 0, saturation of black is 0
    (the same conventions as :func:`colorsys.rgb_to_hsv`).
    """
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h_r = ((g - b) / safe) % 6.0
    h_g = (b - r) / safe + 2.0
    h_b = (r - g) / safe + 4.0
    hue = torch.where(argmax == 0, h_r, torch.where(argmax == 1, h_g, h_b)) / 6.0
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue)) % 1.0
    sat = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    return torch.stack([hue, sat, maxc], dim=1)


def colour_histogram(x: torch.Tensor, bins: int = HIST_BINS) -> torch.Tensor:
    """Per-channel histograms of RGB and HSV, ``bins`` bins each, on images in [0, 1].

    Args:
        x: float tensor (B, 3, H, W) with values in [0, 1] (values outside are clamped).
        bins: bins per channel; bin ``i`` holds values in ``[i/bins, (i+1)/bins)``, 1.0 falls in the last.

    Returns:
        float32 tensor (B, 6 * bins): channels in the order R, G, B, H, S, V, each block of
        ``bins`` values summing to 1 (the fraction of pixels per bin).

    Raises:
        ValueError: ``x`` is not a batch of RGB images.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"colour_histogram expects (B, 3, H, W) RGB images, got shape {tuple(x.shape)}")
    x = x.float().clamp(0.0, 1.0)
    batch = x.shape[0]
    pixels = x.shape[2] * x.shape[3]
    channels = torch.cat([x, rgb_to_hsv(x)], dim=1)  # (B, 6, H, W)
    idx = (channels * bins).long().clamp_(0, bins - 1).flatten(2)  # (B, 6, P)
    offsets = torch.arange(batch * 6, device=x.device).view(batch, 6, 1) * bins
    counts = torch.bincount((idx + offsets).flatten(), minlength=batch * 6 * bins)
    return (counts.view(batch, 6 * bins).float() / float(pixels)).contiguous()


class ColourHistogram(nn.Module):
    """Colour-histogram "encoder": (B, 3, H, W) images in [0, 1] -> (B, 6 * bins) features.

    32 bins per channel of RGB and HSV (192-d by default), each channel block normalised to sum
    to 1. No trainable weights; it holds one empty, frozen parameter so code that reads
    ``next(model.parameters()).device`` works as for any backbone.

    Args:
        bins: bins per channel (32 by default, as in the project's baseline definition).
    """

    def __init__(self, bins: int = HIST_BINS) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = int(bins)
        self.embed_dim = 6 * self.bins
        self.num_features = self.embed_dim
        self.register_parameter("anchor", nn.Parameter(torch.zeros(0), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return colour_histogram(x, self.bins)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, channels=RGB+HSV, embed_dim={self.embed_dim}"
