"""Cytology augmentations: multi-view transforms for SimCLR and DINO, on CPU or on the device.

Why these choices (see ``docs/methods.md``):

* **Any rotation, both flips.** A cell on a smear has no orientation, so a rotated cell is the same
  cell. Corners uncovered by the rotation are filled with the image's own background colour (median
  of its border pixels), not black: a black corner is a shortcut feature no real image has.
* **Crops tuned for centred cells.** Single-cell crops have the cell in the middle; a random resized
  crop of 40-100 % of the area (``scale=(0.4, 1.0)``) keeps most of the cell in every global view.
  DINO's local crops (10-40 %) look at parts of it (nucleus, granules, cytoplasm).
* **Stain is information.** Granule colour (eosinophil orange, basophil purple) and cytoplasm tint
  separate classes, so colour jitter is small (brightness/contrast/saturation 0.2, hue 0.02) and
  there is no grayscale by default (``grayscale_p=0``), unlike natural-image SimCLR (0.8 / 0.2).
* **Mild blur** simulates focus variation between scanners.

CPU path: the transform objects below map a PIL RGB image to a list of normalised tensors (one
per view); the data module stacks them. Device path (``augment_on_device=True`` in the tasks): the
loader runs :class:`DecodeOnly` (PIL -> one uint8 tensor at a fixed size) and :class:`DeviceViews`
makes the views with kornia on the accelerator after the batch is transferred.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import numpy as np
import torch
from kornia.geometry.transform import rotate
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def border_colour(img: Image.Image, width: int = 2) -> tuple[int, int, int]:
    """Median RGB of the outer ``width`` pixels of an image: the smear background around the cell."""
    a = np.asarray(img.convert("RGB"))
    w = max(1, min(width, a.shape[0] // 2, a.shape[1] // 2))
    frame = np.concatenate(
        [a[:w].reshape(-1, 3), a[-w:].reshape(-1, 3), a[:, :w].reshape(-1, 3), a[:, -w:].reshape(-1, 3)]
    )
    med = np.median(frame, axis=0)
    return int(med[0]), int(med[1]), int(med[2])


class BackgroundRotation:
    """Rotate a PIL image by a uniform random angle in ``[-degrees, degrees]``, filling uncovered
    corners with the image's background colour (:func:`border_colour`) or a fixed ``fill``.

    Args:
        degrees: maximum absolute angle (180 = any orientation).
        p: probability of rotating.
        fill: fixed RGB fill; ``None`` estimates it per image from the border.
    """

    def __init__(
        self, degrees: float = 180.0, p: float = 1.0, fill: tuple[int, int, int] | None = None
    ) -> None:
        self.degrees = float(degrees)
        self.p = float(p)
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.p <= 0 or random.random() >= self.p:
            return img
        angle = random.uniform(-self.degrees, self.degrees)
        fill = self.fill if self.fill is not None else border_colour(img)
        return img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)

    def __repr__(self) -> str:
        return f"BackgroundRotation(degrees={self.degrees}, p={self.p}, fill={self.fill})"


@dataclass
class ViewSpec:
    """One kind of augmented view.

    Args:
        size: output side in pixels.
        scale: area range of the random resized crop.
        blur_p: probability of Gaussian blur.
    """

    size: int
    scale: tuple[float, float] = (0.4, 1.0)
    blur_p: float = 0.2


@dataclass
class CellAugment:
    """The augmentation knobs shared by every view (stain-preserving defaults).

    Args:
        rotate: rotate by any angle with background fill.
        flip: random horizontal and vertical flips.
        jitter: strength of brightness/contrast/saturation jitter.
        hue: hue jitter (keep tiny: hue carries stain information).
        jitter_p: probability of applying the colour jitter.
        grayscale_p: probability of converting to grey (0: stain is information).
        blur_sigma: sigma range of the Gaussian blur (pixels at the output size).
        ratio: aspect-ratio range of the random resized crop.
        mean: normalisation mean.
        std: normalisation std.
    """

    rotate: bool = True
    flip: bool = True
    jitter: float = 0.2
    hue: float = 0.02
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _kernel_size(size: int) -> int:
    k = max(3, int(round(size * 0.1)))
    return k if k % 2 == 1 else k + 1


def view_transform(spec: ViewSpec, aug: CellAugment) -> Any:
    """A torchvision pipeline for one view: PIL RGB -> normalised float Tensor (3, size, size)."""
    steps: list[Any] = []
    if aug.rotate:
        steps.append(BackgroundRotation(180.0))
    steps.append(
        T.RandomResizedCrop(
            spec.size, scale=spec.scale, ratio=aug.ratio, interpolation=T.InterpolationMode.BILINEAR
        )
    )
    if aug.flip:
        steps += [T.RandomHorizontalFlip(), T.RandomVerticalFlip()]
    if aug.jitter > 0 or aug.hue > 0:
        j = aug.jitter
        steps.append(T.RandomApply([T.ColorJitter(j, j, j, aug.hue)], p=aug.jitter_p))
    if aug.grayscale_p > 0:
        steps.append(T.RandomGrayscale(p=aug.grayscale_p))
    if spec.blur_p > 0:
        steps.append(
            T.RandomApply([T.GaussianBlur(_kernel_size(spec.size), sigma=aug.blur_sigma)], p=spec.blur_p)
        )
    steps += [T.ToTensor(), T.Normalize(aug.mean, aug.std)]
    return T.Compose(steps)


class MultiView:
    """PIL RGB -> list of augmented views (one tensor per :class:`ViewSpec`).

    Args:
        views: the view specs, in output order.
        aug: shared augmentation knobs.
    """

    def __init__(self, views: Sequence[ViewSpec], aug: CellAugment | None = None) -> None:
        if not views:
            raise ValueError("MultiView needs at least one ViewSpec")
        self.views = list(views)
        self.aug = aug or CellAugment()
        self._pipelines = [view_transform(v, self.aug) for v in self.views]

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [p(img) for p in self._pipelines]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(views={self.views}, aug={self.aug})"


class SimCLRViews(MultiView):
    """Two views of the same cell for SimCLR (Chen et al. 2020, ICML).

    Args:
        input_size: side of both views.
        scale: crop area range (default 0.4-1.0: centred cells stay in view).
        blur_p: blur probability per view.
        aug: shared augmentation knobs (defaults keep stain information).
    """

    def __init__(
        self,
        input_size: int = 96,
        scale: tuple[float, float] = (0.4, 1.0),
        blur_p: float = 0.2,
        aug: CellAugment | None = None,
    ) -> None:
        super().__init__([ViewSpec(input_size, scale, blur_p)] * 2, aug)


class DINOViews(MultiView):
    """Two global and ``n_local`` local views for DINO multi-crop (Caron et al. 2021, ICCV).

    Blur follows DINO (p = 1.0 and 0.1 on the two global views, 0.5 on local views); solarisation is
    left out because it destroys the stain colours.

    Args:
        input_size: side of the global views.
        local_size: side of the local views.
        n_local: number of local views.
        global_scale: crop area range of global views.
        local_scale: crop area range of local views.
        aug: shared augmentation knobs.
    """

    def __init__(
        self,
        input_size: int = 96,
        local_size: int = 48,
        n_local: int = 6,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.1, 0.4),
        aug: CellAugment | None = None,
    ) -> None:
        specs = [ViewSpec(input_size, global_scale, 1.0), ViewSpec(input_size, global_scale, 0.1)]
        specs += [ViewSpec(local_size, local_scale, 0.5)] * n_local
        super().__init__(specs, aug)


class EvalTransform:
    """Evaluation transform: resize the shorter side to ``input_size``, centre crop, normalise.

    Args:
        input_size: output side.
        mean: normalisation mean.
        std: normalisation std.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._t = T.Compose(
            [
                T.Resize(self.input_size, interpolation=T.InterpolationMode.BILINEAR),
                T.CenterCrop(self.input_size),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self._t(img)

    def __repr__(self) -> str:
        return f"EvalTransform(input_size={self.input_size}, mean={self.mean}, std={self.std})"


class DecodeOnly:
    """Loader side of on-device augmentation: PIL -> ``[uint8 Tensor (3, size, size)]``.

    Resizes the shorter side to ``size`` and centre-crops (uint8 keeps the host-to-device copy 4x
    smaller than float). :class:`DeviceViews` then makes every view from this one tensor.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._t = T.Compose(
            [
                T.Resize(self.size, interpolation=T.InterpolationMode.BILINEAR),
                T.CenterCrop(self.size),
                T.PILToTensor(),
            ]
        )

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [self._t(img)]


class DeviceViews:
    """On-device multi-view augmentation with kornia: a uint8/float batch -> list of normalised views.

    Same recipe as the CPU path: rotation by any angle filled with each image's border colour, random
    resized crop, flips, small colour jitter, optional grayscale, blur, normalisation.

    Args:
        views: the view specs, in output order.
        aug: shared augmentation knobs.
    """

    def __init__(self, views: Sequence[ViewSpec], aug: CellAugment | None = None) -> None:
        self.views = list(views)
        self.aug = aug or CellAugment()
        self._pipes: list[Any] | None = None

    def _build(self) -> list[Any]:
        a = self.aug
        pipes = []
        for v in self.views:
            ops: list[Any] = [K.RandomResizedCrop((v.size, v.size), scale=v.scale, ratio=a.ratio)]
            if a.flip:
                ops += [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
            if a.jitter > 0 or a.hue > 0:
                ops.append(K.ColorJitter(a.jitter, a.jitter, a.jitter, a.hue, p=a.jitter_p))
            if a.grayscale_p > 0:
                ops.append(K.RandomGrayscale(p=a.grayscale_p))
            if v.blur_p > 0:
                k = _kernel_size(v.size)
                ops.append(K.RandomGaussianBlur((k, k), a.blur_sigma, p=v.blur_p))
            pipes.append(K.AugmentationSequential(*ops))
        return pipes

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._pipes is None:
            self._pipes = self._build()
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        mean = torch.tensor(self.aug.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.aug.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        out = []
        for pipe in self._pipes:
            v = rotate_with_background(x) if self.aug.rotate else x
            v = pipe(v).clamp_(0.0, 1.0)
            out.append((v - mean) / std)
        return out


def rotate_with_background(x: torch.Tensor, border: int = 2) -> torch.Tensor:
    """Rotate each image of a float batch by a uniform random angle, filling corners with that
    image's border median (rotating ``x - bg`` with zero padding, then adding ``bg`` back)."""
    b = x.shape[0]
    frame = torch.cat(
        [
            x[..., :border, :].flatten(2),
            x[..., -border:, :].flatten(2),
            x[..., :, :border].flatten(2),
            x[..., :, -border:].flatten(2),
        ],
        dim=2,
    )
    bg = frame.median(dim=2).values.view(b, 3, 1, 1)
    angle = torch.empty(b, device=x.device, dtype=x.dtype).uniform_(-180.0, 180.0)
    return rotate(x - bg, angle, padding_mode="zeros") + bg
