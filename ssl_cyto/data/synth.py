"""Generated single-cell images in exactly the layouts of the real datasets.

The two target datasets (AML-Cytomorphology_LMU, Matek et al. 2019; Bone-Marrow-Cytomorphology_MLL_
Helmholtz_Fraunhofer, Matek et al. 2021) cannot be downloaded in tests or CI, so this module writes
look-alikes with the same folder structure, file names, formats and side files:

* ``aml-lmu``: ``AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff`` (RGBA, 400x400; alpha is 255 over the cell
  and falls off softly towards the corners), ``annotations.dat`` (``path gold reannot1 reannot2`` with
  ``nan`` for cells that were not re-annotated, ``UNC`` for "unassignable", and a few disagreements)
  and ``abbreviations.txt``.
* ``bm-mll``: ``BM_cytomorphology_data/<CLS>/[<range>/]<CLS>_NNNNN.jpg`` (RGB JPEG, 250x250; classes
  with more than ``range_size`` cells are split into range folders ``0001-1000``, ``1001-2000``, ...
  the last one ending at the class count) and ``abbreviations.csv`` (``Abbreviation;Meaning``).
* ``folder``: an ImageFolder tree ``<class>/<class>_NNNN.png`` with a few generic class names and a
  ``manifest.csv`` (``path,label,sha256``).

How a cell is drawn (all vectorised numpy over a batch of cells of one class):

1. Signed distance fields give the cell outline (radius with random low-order harmonics, "hairy"
   projections for hairy cells) and the nucleus, whose *shape* depends on the class: round, oval,
   kidney (indented), band (a curved C-shaped tube), segmented (3-5 lobes joined by thin strands),
   bilobed, eccentric (plasma cell), smudged, or scattered chromatin clumps (mitosis).
2. Texture: chromatin is modulated by band-limited noise whose scale and contrast depend on the class
   (coarse clumped lymphocyte, fine lacy blast chromatin with pale nucleoli, pyknotic erythroblast);
   cytoplasm carries granules (fine neutrophilic, coarse eosinophilic, dark basophilic granules that
   also cover the nucleus, azurophilic), vacuoles (monocytes), Auer rods (faggot cells), a pale
   perinuclear hof (plasma cells, promyelocytes).
3. Two stain densities (an azure/haematoxylin-like "basic" stain and an eosin-like "acidic" stain) are
   turned into RGB with Beer-Lambert absorption. The stain vectors, stain strength, background tint,
   illumination fall-off and the cytoplasm colours are randomised per image with a spread as large as
   the differences between class means, so colour alone separates classes only weakly: the classes
   differ mainly in shape, size ratios and texture. Red blood cells (discs with central pallor) lie in
   the background.

Everything is deterministic for a seed: cell ``i`` of class ``c`` is drawn from a random generator
seeded with ``(seed, layout, c, chunk)``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_cyto.data.vocabulary import AML_LMU_CLASSES, BM_MLL_CLASSES

if TYPE_CHECKING:
    import numpy as np

GENERATOR_VERSION = "1"
LAYOUTS = ("aml-lmu", "bm-mll", "folder")
AML_DIR = "AML-Cytomorphology"
BM_DIR = "BM_cytomorphology_data"
# Field of view (micrometres across the image) and default image size per layout. AML-LMU: 400 px at
# 14.14 px/um (100x oil); BM-MLL: 250 px crops at 40x (scale not published; cells fill a similar share
# of the crop); folder: PBC-like 360 px crops.
FIELD_UM = {"aml-lmu": 400 / 14.14, "bm-mll": 24.0, "folder": 26.0}
DEFAULT_SIZE = {"aml-lmu": 400, "bm-mll": 250, "folder": 256}
FOLDER_CLASSES = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
CHUNK = 16  # cells rendered together; part of the seed, so changing it changes the images


class SynthError(ValueError):
    """Bad arguments for the generator (unknown layout, non-positive counts...)."""


@dataclass(frozen=True)
class Morph:
    """Class-dependent morphology of one cell type (sizes in micrometres or fractions of the cell).

    Attributes:
        diameter_um: mean cell diameter.
        nucleus: nucleus shape: round, oval, kidney, band, segmented, bilobed, smudge, scattered, none.
        nuc_frac: nucleus radius / cell radius.
        chromatin: texture: coarse, clumped, fine, dense, streaky.
        lobes: (min, max) lobes of a segmented nucleus.
        nucleoli: (min, max) pale nucleoli.
        cyto_blue: basophilia of the cytoplasm (azure density).
        cyto_pink: acidophilia of the cytoplasm (eosin density).
        granules: none, fine, azurophil, eo, baso, mixed.
        vacuoles: (min, max) cytoplasmic vacuoles.
        hairy: hairy projections on the outline.
        rods: (min, max) Auer rods.
        hof: pale perinuclear zone.
        irregular: amplitude of the outline's low-order harmonics.
        eccentric: offset of the nucleus centre, as a fraction of the cell radius.
        no_cytoplasm: naked (smudged) nucleus or debris.
        blur: optical blur in pixels at 400 px (not-identifiable cells).
        connector: strand radius between lobes, as a fraction of the lobe radius.
    """

    diameter_um: float
    nucleus: str
    nuc_frac: float
    chromatin: str = "coarse"
    lobes: tuple[int, int] = (1, 1)
    nucleoli: tuple[int, int] = (0, 0)
    cyto_blue: float = 0.3
    cyto_pink: float = 0.2
    granules: str = "none"
    vacuoles: tuple[int, int] = (0, 0)
    hairy: bool = False
    rods: tuple[int, int] = (0, 0)
    hof: bool = False
    irregular: float = 0.03
    eccentric: float = 0.0
    no_cytoplasm: bool = False
    blur: float = 0.0
    connector: float = 0.2


# One morphology per cell type; abbreviations follow the datasets. Values are rough textbook
# proportions (e.g. Bain, "Blood Cells", 5th ed.), not measurements.
MORPHS: dict[str, Morph] = {
    "NGS": Morph(
        12.5, "segmented", 0.62, "coarse", lobes=(3, 5), cyto_blue=0.12, cyto_pink=0.28, granules="fine"
    ),
    "NGB": Morph(12.5, "band", 0.62, "coarse", cyto_blue=0.12, cyto_pink=0.28, granules="fine"),
    "MMZ": Morph(13.0, "kidney", 0.58, "coarse", cyto_blue=0.16, cyto_pink=0.26, granules="fine"),
    "MYB": Morph(
        14.0, "oval", 0.55, "coarse", cyto_blue=0.22, cyto_pink=0.24, granules="azurophil", eccentric=0.2
    ),
    "PMO": Morph(
        17.0,
        "oval",
        0.6,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.3,
        cyto_pink=0.2,
        granules="azurophil",
        eccentric=0.22,
        hof=True,
    ),
    "PMB": Morph(
        16.0,
        "bilobed",
        0.6,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.28,
        cyto_pink=0.2,
        granules="azurophil",
        connector=0.7,
    ),
    "MYO": Morph(15.0, "round", 0.78, "fine", nucleoli=(1, 3), cyto_blue=0.38, cyto_pink=0.12, rods=(0, 1)),
    "BLA": Morph(15.0, "round", 0.78, "fine", nucleoli=(1, 3), cyto_blue=0.38, cyto_pink=0.12, rods=(0, 1)),
    "MOB": Morph(
        18.0,
        "round",
        0.68,
        "fine",
        nucleoli=(1, 2),
        cyto_blue=0.32,
        cyto_pink=0.14,
        vacuoles=(0, 3),
        irregular=0.05,
    ),
    "MON": Morph(
        17.0,
        "kidney",
        0.6,
        "fine",
        cyto_blue=0.26,
        cyto_pink=0.16,
        granules="fine",
        vacuoles=(2, 6),
        irregular=0.06,
    ),
    "LYT": Morph(9.0, "round", 0.84, "clumped", cyto_blue=0.42, cyto_pink=0.08),
    "LYA": Morph(13.0, "oval", 0.62, "coarse", cyto_blue=0.5, cyto_pink=0.08, irregular=0.08, eccentric=0.12),
    "LYI": Morph(11.0, "round", 0.82, "fine", nucleoli=(1, 2), cyto_blue=0.45, cyto_pink=0.08),
    "HAC": Morph(14.0, "oval", 0.52, "fine", cyto_blue=0.3, cyto_pink=0.1, hairy=True),
    "EOS": Morph(
        13.5, "bilobed", 0.55, "coarse", cyto_blue=0.1, cyto_pink=0.22, granules="eo", connector=0.2
    ),
    "ABE": Morph(14.5, "oval", 0.5, "coarse", cyto_blue=0.15, cyto_pink=0.2, granules="mixed"),
    "BAS": Morph(
        11.5, "bilobed", 0.55, "coarse", cyto_blue=0.16, cyto_pink=0.16, granules="baso", connector=0.6
    ),
    "EBO": Morph(9.5, "round", 0.58, "dense", cyto_blue=0.24, cyto_pink=0.26, irregular=0.015),
    "PEB": Morph(17.0, "round", 0.72, "fine", nucleoli=(1, 2), cyto_blue=0.62, cyto_pink=0.06, hof=True),
    "PLM": Morph(13.0, "round", 0.45, "clumped", cyto_blue=0.55, cyto_pink=0.06, eccentric=0.42, hof=True),
    "FGC": Morph(
        17.0,
        "oval",
        0.58,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.3,
        cyto_pink=0.2,
        granules="azurophil",
        rods=(6, 12),
        eccentric=0.15,
    ),
    "KSC": Morph(14.0, "smudge", 0.8, "streaky", no_cytoplasm=True),
    "ART": Morph(14.0, "none", 0.0, "streaky", no_cytoplasm=True, irregular=0.3),
    "NIF": Morph(13.0, "kidney", 0.6, "coarse", cyto_blue=0.25, cyto_pink=0.18, blur=6.0),
    "OTH": Morph(15.0, "scattered", 0.6, "dense", cyto_blue=0.3, cyto_pink=0.14),
}
FOLDER_MORPHS = {
    "basophil": "BAS",
    "eosinophil": "EOS",
    "lymphocyte": "LYT",
    "monocyte": "MON",
    "neutrophil": "NGS",
}
# Chromatin: (mean density, texture scale as a fraction of the cell radius, contrast).
CHROMATIN = {
    "coarse": (1.0, 0.1, 0.45),
    "clumped": (1.15, 0.08, 0.6),
    "fine": (0.75, 0.035, 0.2),
    "dense": (1.55, 0.06, 0.12),
    "streaky": (0.55, 0.12, 0.5),
}


def layout_classes(layout: str) -> list[str]:
    """The class names a layout is written with (dataset abbreviations, or generic folder names)."""
    if layout == "aml-lmu":
        return sorted(AML_LMU_CLASSES)
    if layout == "bm-mll":
        return sorted(BM_MLL_CLASSES)
    if layout == "folder":
        return list(FOLDER_CLASSES)
    raise SynthError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _morph(label: str) -> Morph:
    return MORPHS[FOLDER_MORPHS.get(label, label)]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


class _Grid:
    """Pixel coordinates and bilinear-upsampling tables for one image size (cached)."""

    _cache: dict[int, _Grid] = {}

    def __init__(self, size: int) -> None:
        import numpy as np

        self.size = size
        ax = np.arange(size, dtype=np.float32) + 0.5
        self.x = ax[None, :]
        self.y = ax[:, None]
        self._up: dict[int, tuple[Any, ...]] = {}
        _ = np

    @classmethod
    def get(cls, size: int) -> _Grid:
        if size not in cls._cache:
            cls._cache[size] = cls(size)
        return cls._cache[size]

    def noise(self, rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
        """Band-limited noise (n, S, S), roughly unit variance, with features about ``cell`` px wide.

        Small scales: Gaussian-filtered white noise (isotropic); large scales: smooth value noise on
        a coarse grid (cheaper, and its grid is invisible at that size).
        """
        import numpy as np

        cell = max(1.0, float(cell))
        if cell <= 6.0:
            from scipy.ndimage import gaussian_filter

            sigma = cell / 2.5
            white = rng.standard_normal((n, self.size, self.size), dtype=np.float32)
            out = gaussian_filter(white, sigma=(0, sigma, sigma), mode="wrap", truncate=2.5)
            return out * np.float32(2 * math.sqrt(math.pi) * sigma)
        g = int(math.ceil(self.size / cell)) + 2
        if g not in self._up:
            pos = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size * (g - 2) + 0.5
            i0 = np.floor(pos).astype(np.int64)
            t = pos - i0
            t = t * t * (3 - 2 * t)  # smoothstep: no grid artefacts in the derivative
            self._up[g] = (i0, np.minimum(i0 + 1, g - 1), t.astype(np.float32))
        i0, i1, t = self._up[g]
        base = rng.standard_normal((n, g, g), dtype=np.float32)
        rows = base[:, i0, :] * (1 - t)[None, :, None] + base[:, i1, :] * t[None, :, None]
        out = rows[:, :, i0] * (1 - t)[None, None, :] + rows[:, :, i1] * t[None, None, :]
        return out * np.float32(1.6)

    def dots(self, rng: np.random.Generator, n: int, radius: float, density: float) -> np.ndarray:
        """Round granules (n, S, S) in [0, 1]: ``density`` = expected fraction of the area covered."""
        import numpy as np
        from scipy.ndimage import gaussian_filter

        radius = max(0.7, float(radius))
        p = min(0.5, density / (math.pi * radius * radius))
        imp = (rng.random((n, self.size, self.size), dtype=np.float32) < p).astype(np.float32)
        imp *= rng.uniform(0.6, 1.4, imp.shape).astype(np.float32)
        sigma = radius / 1.2
        blob = gaussian_filter(imp, sigma=(0, sigma, sigma), mode="wrap", truncate=2.5)
        peak = 1.0 / (2 * math.pi * sigma * sigma)
        return np.clip(blob / np.float32(peak * 0.6), 0.0, 1.0)


def _sig(d: np.ndarray, edge: float) -> np.ndarray:
    """Soft inside-mask of a signed distance (negative inside)."""
    import numpy as np

    return 0.5 - 0.5 * np.tanh(d * np.float32(0.5 / edge))


def _col(a: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)


def _capsule(u: np.ndarray, v: np.ndarray, a: tuple, b: tuple, r: np.ndarray) -> np.ndarray:
    """Signed distance to capsules from a to b (per image (n,) endpoints) with radius r."""
    import numpy as np

    ax, ay = _col(a[0]), _col(a[1])
    bx, by = _col(b[0]), _col(b[1])
    px, py = u - ax, v - ay
    dx, dy = bx - ax, by - ay
    h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return np.hypot(px - h * dx, py - h * dy) - _col(r)


def _harmonics(rng: np.random.Generator, n: int, th: np.ndarray, amp: float, kmax: int = 5) -> np.ndarray:
    """Random smooth radial perturbation 1 + sum_k a_k cos(k th + phi_k), k = 2..kmax.

    cos(k th) and sin(k th) come from the angle-addition recurrence (two trig calls in all).
    """
    import numpy as np

    c1, s1 = np.cos(th), np.sin(th)
    ck, sk = c1, s1
    out = np.ones_like(th)
    for k in range(2, kmax + 1):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        a = rng.normal(0, amp / math.sqrt(k - 1), n)
        phi = rng.uniform(0, 2 * np.pi, n)
        # a cos(k th + phi) = a cos(phi) cos(k th) - a sin(phi) sin(k th)
        out += _col(a * np.cos(phi)) * ck - _col(a * np.sin(phi)) * sk
    return out


def _nucleus_sdf(m: Morph, rng: np.random.Generator, n: int, u: np.ndarray, v: np.ndarray, rn: np.ndarray):
    """Signed distance to the nucleus in nucleus-centred coordinates; rn: (n,) nucleus radius."""
    import numpy as np

    Rn = _col(rn)
    kind = m.nucleus
    if kind in ("round", "oval", "kidney", "smudge"):
        e = {"round": (0.0, 0.08), "oval": (0.1, 0.25), "kidney": (0.05, 0.15), "smudge": (0.2, 0.4)}[kind]
        ecc = _col(rng.uniform(*e, n))
        uu, vv = u / (1 + ecc), v / (1 - ecc)
        r = np.hypot(uu, vv)
        th = np.arctan2(vv, uu)
        amp = {"round": 0.025, "oval": 0.03, "kidney": 0.04, "smudge": 0.18}[kind]
        d = r - Rn * _harmonics(rng, n, th, amp)
        if kind == "kidney":
            off = _col(rng.uniform(0.85, 1.15, n)) * Rn
            ri = _col(rng.uniform(0.45, 0.7, n)) * Rn
            d_in = np.hypot(u - off, v) - ri
            d = np.maximum(d, -d_in)
        return d
    if kind == "band":
        rho = Rn * _col(rng.uniform(0.6, 0.8, n))
        t = Rn * _col(rng.uniform(0.24, 0.32, n))
        half = _col(np.radians(rng.uniform(100, 150, n)))
        r = np.hypot(u, v)
        th = np.arctan2(v, -u)  # 0 points along -u: the arc opens towards +u
        inside = np.abs(th) <= half
        e1 = (-rho * np.cos(half), rho * np.sin(half))
        d_end = np.minimum(np.hypot(u - e1[0], v - e1[1]), np.hypot(u - e1[0], v + e1[1]))
        width = t * (1 + 0.25 * np.cos(th * 2.5 + _col(rng.uniform(0, 6.3, n))))
        return np.where(inside, np.abs(r - rho), d_end) - width
    if kind in ("segmented", "bilobed", "scattered"):
        if kind == "segmented":
            lo, hi = m.lobes
            k = rng.integers(lo, hi + 1, n)
            kmax = hi
            span = np.radians(rng.uniform(150, 250, n))
            rho = rn * rng.uniform(0.65, 0.8, n)
            rl = rn * rng.uniform(0.34, 0.42, n)
        elif kind == "bilobed":
            k = np.full(n, 2)
            kmax = 2
            span = np.radians(rng.uniform(90, 160, n))
            rho = rn * rng.uniform(0.45, 0.6, n)
            rl = rn * rng.uniform(0.5, 0.6, n)
        else:
            k = rng.integers(6, 11, n)
            kmax = 10
            span = np.full(n, 2 * np.pi)
            rho = rn * 0.5
            rl = rn * rng.uniform(0.14, 0.2, n)
        d = np.full(u.shape, np.inf, dtype=np.float32)
        prev = None
        for j in range(kmax):
            active = j < k
            if kind == "scattered":
                ang = rng.uniform(0, 2 * np.pi, n)
                rad = rn * np.sqrt(rng.uniform(0, 1, n)) * 0.75
            else:
                frac = np.where(k > 1, j / np.maximum(k - 1, 1) - 0.5, 0.0)
                ang = np.pi + frac * span + rng.normal(0, 0.12, n)
                rad = rho * rng.uniform(0.85, 1.15, n)
            cx, cy = rad * np.cos(ang), rad * np.sin(ang)
            rj = np.where(active, rl * rng.uniform(0.85, 1.15, n), -1e4)
            if kind == "scattered":
                sx = _col(rng.uniform(0.5, 1.0, n))
                dj = np.hypot((u - _col(cx)) * sx, v - _col(cy)) - _col(rj)
            else:
                dj = np.hypot(u - _col(cx), v - _col(cy)) - _col(rj)
            d = np.minimum(d, dj)
            if prev is not None and kind != "scattered":
                rc = np.where(active, rl * m.connector, -1e4)
                d = np.minimum(d, _capsule(u, v, prev, (cx, cy), rc))
            prev = (cx, cy)
        return d
    if kind == "none":
        return np.full(u.shape, 1e4, dtype=np.float32)
    raise SynthError(f"unknown nucleus kind {kind!r}")


def render_cells(
    label: str,
    n: int,
    size: int,
    rng: np.random.Generator,
    field_um: float = 26.0,
    max_render: int = 224,
    return_mask: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``n`` cells of one class.

    Args:
        label: a class abbreviation (``NGS``, ``LYT``...) or a generic folder class name.
        n: number of cells.
        size: image side in pixels.
        rng: the random generator (determines the cells).
        field_um: micrometres across the image (sets the cell size in pixels).
        max_render: larger images are drawn at this size and upsampled (bilinear), which keeps the
            generator fast at 400 px; the detail of a 224 px drawing is all a 400 px crop of a blurry
            100x field shows.
        return_mask: also return the cell mask (costs a resize per image when upsampling).

    Returns:
        ``(rgb, cellmask)``: uint8 array (n, size, size, 3) and float32 (n, size, size) soft mask of the
        cell (1 inside), used for the alpha channel (``None`` unless ``return_mask``).
    """
    import numpy as np

    m = _morph(label)
    S_out = int(size)
    S_int = min(S_out, int(max_render))
    G = _Grid.get(S_int)
    S = float(S_int)
    ppu = S / field_um
    edge = max(0.5, S / 300.0)
    R = m.diameter_um / 2 * ppu * rng.normal(1.0, 0.09, n).clip(0.75, 1.25)
    Rm = float(R.mean())
    cx = S / 2 + rng.normal(0, 0.025 * S, n)
    cy = S / 2 + rng.normal(0, 0.025 * S, n)
    rot = rng.uniform(0, 2 * np.pi, n)
    dx = G.x[None] - _col(cx)
    dy = G.y[None] - _col(cy)
    c, s = _col(np.cos(rot)), _col(np.sin(rot))
    u = c * dx + s * dy
    v = c * dy - s * dx
    r = np.hypot(u, v)
    th = np.arctan2(v, u)
    Rc = _col(R)

    # --- cell outline
    rad = _harmonics(rng, n, th, m.irregular)
    if m.hairy:
        kh = _col(rng.integers(14, 24, n))
        hair = np.maximum(np.cos(kh * th + _col(rng.uniform(0, 6.3, n))), 0) ** 6
        rad = rad + 0.18 * hair * (1 + 0.5 * G.noise(rng, n, S / 12))
    d_cell = r - Rc * rad
    cell = _sig(d_cell, edge)

    # --- nucleus: shape from the class, chromatin texture from the class
    rn = R * m.nuc_frac * rng.normal(1.0, 0.06, n).clip(0.8, 1.2)
    off = _col(R * m.eccentric * rng.uniform(0.7, 1.2, n))
    nu, nv = u - off, v
    d_nuc = _nucleus_sdf(m, rng, n, nu, nv, rn)
    nuc = _sig(d_nuc, edge * 1.2) * (1.0 if m.no_cytoplasm else cell)
    dens0, scale, amp = CHROMATIN[m.chromatin]
    dens = dens0 * rng.uniform(0.85, 1.15, n)
    tex = G.noise(rng, n, scale * Rm)
    if m.chromatin == "streaky":  # smeared: texture stretched along one direction
        tex = 0.5 * tex + 0.5 * np.roll(tex, max(1, int(Rm * 0.08)), axis=2)
    fine = G.noise(rng, n, max(1.0, 0.02 * Rm))
    chrom = _col(dens) * (1 + amp * np.tanh(tex) + 0.12 * np.tanh(fine))
    if m.chromatin == "clumped":  # dark clumps separated by paler parachromatin
        chrom = chrom + _col(dens) * 0.5 * G.dots(rng, n, 0.07 * Rm, 0.35)
    azure = nuc * chrom
    eosin = np.zeros_like(azure)

    # nucleoli: pale round spots inside the nucleus
    lo, hi = m.nucleoli
    if hi > 0:
        k = rng.integers(lo, hi + 1, n)
        for j in range(hi):
            a = rng.uniform(0, 2 * np.pi, n)
            rr = rn * rng.uniform(0.0, 0.45, n)
            rj = np.where(j < k, rn * rng.uniform(0.1, 0.16, n), -1e4)
            spot = _sig(np.hypot(nu - _col(rr * np.cos(a)), nv - _col(rr * np.sin(a))) - _col(rj), edge)
            azure = azure * (1 - 0.6 * spot) + 0.1 * spot * nuc

    # --- cytoplasm: class mean colour plus a per-image spread about as large as the class differences
    cyto = cell * (1 - nuc) if not m.no_cytoplasm else np.zeros_like(cell)
    blue = np.clip(m.cyto_blue + rng.normal(0, 0.12, n), 0.03, None)
    pink = np.clip(m.cyto_pink + rng.normal(0, 0.08, n), 0.02, None)
    ctex = 1 + 0.15 * G.noise(rng, n, Rm * 0.3)
    cb = cyto * _col(blue) * ctex
    cp = cyto * _col(pink) * ctex
    if m.hof:
        d_hof = np.hypot(nu + _col(rn * 0.6), nv) - _col(rn * 1.05)
        hof = _sig(d_hof, edge * 3) * cyto
        cb = cb * (1 - 0.6 * hof)
    gran = m.granules
    if gran == "fine":  # neutrophilic: barely resolved dust
        g = G.dots(rng, n, 0.022 * Rm, 0.35) * cyto
        cp = cp + 0.12 * g
        cb = cb + 0.05 * g
    elif gran == "azurophil":  # scattered purple-red granules
        g = G.dots(rng, n, 0.035 * Rm, 0.18) * cell
        cb = cb + 0.5 * g
        cp = cp + 0.35 * g
    elif gran == "eo":  # coarse, packed, orange
        g = G.dots(rng, n, 0.06 * Rm, 0.7) * cyto
        cp = cp + 0.7 * g
        cb = cb + 0.04 * g
    elif gran == "mixed":  # abnormal eosinophil: orange and dark purple granules
        g1 = G.dots(rng, n, 0.06 * Rm, 0.35) * cyto
        g2 = G.dots(rng, n, 0.06 * Rm, 0.3) * cyto
        cp = cp + 0.6 * g1
        cb = cb + 0.6 * g2
    elif gran == "baso":  # large dark granules over cytoplasm and nucleus
        g = G.dots(rng, n, 0.07 * Rm, 0.45) * cell
        cb = cb + 0.9 * g
        azure = azure * (1 - 0.4 * g)
    lo, hi = m.vacuoles
    if hi > 0:
        k = rng.integers(lo, hi + 1, n)
        for j in range(hi):
            a = rng.uniform(0, 2 * np.pi, n)
            rr = R * rng.uniform(0.35, 0.85, n)
            rj = np.where(j < k, R * rng.uniform(0.04, 0.09, n), -1e4)
            vac = _sig(np.hypot(u - _col(rr * np.cos(a)), v - _col(rr * np.sin(a))) - _col(rj), edge) * cyto
            cb = cb * (1 - 0.85 * vac)
            cp = cp * (1 - 0.85 * vac)
    lo, hi = m.rods
    if hi > 0:  # Auer rods; faggot cells have bundles of them (shared orientation)
        k = rng.integers(lo, hi + 1, n)
        base_ang = rng.uniform(0, np.pi, n)
        for j in range(hi):
            a = rng.uniform(0, 2 * np.pi, n)
            rr = R * rng.uniform(0.3, 0.75, n)
            px, py = rr * np.cos(a), rr * np.sin(a)
            ang = base_ang + rng.normal(0, 0.25, n)
            half = R * rng.uniform(0.12, 0.22, n)
            rw = np.where(j < k, np.maximum(R * rng.uniform(0.012, 0.02, n), 0.5), -1e4)
            p0 = (px - half * np.cos(ang), py - half * np.sin(ang))
            p1 = (px + half * np.cos(ang), py + half * np.sin(ang))
            rod = _sig(_capsule(u, v, p0, p1, rw), edge * 0.8) * cell
            cb = cb + 0.55 * rod
            cp = cp + 0.9 * rod
    azure = azure + cb
    eosin = eosin + cp
    if m.nucleus == "none":  # artefact: amorphous debris
        blob = cell * np.clip(0.5 + 0.8 * G.noise(rng, n, Rm * 0.2), 0, None)
        azure = azure + blob * _col(rng.uniform(0.1, 0.5, n))
        eosin = eosin + blob * _col(rng.uniform(0.1, 0.5, n))
    if m.no_cytoplasm:
        cell = np.maximum(nuc, cell if m.nucleus == "none" else 0)

    # --- background: red blood cells (discs with central pallor), partly hidden behind the cell
    rbc = np.zeros_like(azure)
    rbc_r = 3.7 * ppu
    nr = rng.integers(1, 8, n)
    for j in range(7):
        a = rng.uniform(0, 2 * np.pi, n)
        rr = rng.uniform(R + rbc_r * 0.5, S * 0.75, n)
        bx, by = cx + rr * np.cos(a), cy + rr * np.sin(a)
        rj = np.where(j < nr, rbc_r * rng.uniform(0.85, 1.15, n), -1e4)
        dd = np.hypot(G.x[None] - _col(bx), G.y[None] - _col(by))
        disc = _sig(dd - _col(rj), edge * 1.2)
        pallor = _sig(dd - _col(rj * 0.5), rbc_r * 0.2)
        rbc = np.maximum(rbc, disc * (1 - 0.5 * pallor))
    outside = 1 - cell
    eosin = eosin + _col(rng.uniform(0.4, 0.6, n)) * rbc * outside
    azure = azure + 0.04 * rbc * outside

    # --- stain (Beer-Lambert) with per-image stain vectors, strength and illumination
    va = np.array([0.85, 1.35, 0.42], dtype=np.float32)[None] * rng.normal(1, 0.14, (n, 3)).clip(0.6, 1.4)
    ve = np.array([0.10, 0.62, 0.72], dtype=np.float32)[None] * rng.normal(1, 0.18, (n, 3)).clip(0.5, 1.5)
    strength = rng.uniform(0.75, 1.25, n)
    va = (va * strength[:, None]).astype(np.float32)
    ve = (ve * strength[:, None]).astype(np.float32)
    od = azure[..., None] * va[:, None, None, :]
    od += eosin[..., None] * ve[:, None, None, :]
    bg = np.stack([rng.uniform(238, 252, n), rng.uniform(222, 246, n), rng.uniform(200, 240, n)], 1)
    gx, gy = rng.uniform(0, S, n), rng.uniform(0, S, n)
    fall = (
        1 - _col(rng.uniform(0, 0.18, n)) * ((G.x[None] - _col(gx)) ** 2 + (G.y[None] - _col(gy)) ** 2) / S**2
    )
    np.negative(od, out=od)
    np.exp(od, out=od)
    img = od
    img *= bg[:, None, None, :].astype(np.float32)
    img *= fall[..., None]
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    mask = cell.astype(np.float32) if return_mask else None
    if S_int != S_out or m.blur > 0:
        from PIL import Image, ImageFilter

        ims, masks = [], []
        for i in range(n):
            im = Image.fromarray(rgb[i])
            if m.blur > 0:
                im = im.filter(ImageFilter.GaussianBlur(m.blur * S_int / 400))
            if S_int != S_out:
                im = im.resize((S_out, S_out), Image.Resampling.BILINEAR)
                if mask is not None:
                    masks.append(
                        np.asarray(Image.fromarray(mask[i]).resize((S_out, S_out), Image.Resampling.BILINEAR))
                    )
            ims.append(np.asarray(im))
        rgb = np.stack(ims)
        if masks:
            mask = np.stack(masks)
    # sensor noise at the output resolution
    noisy = rgb.astype(np.int16) + rng.integers(-3, 4, rgb.shape, dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8), mask


def generate_arrays(
    layout: str,
    per_class: int,
    seed: int,
    size: int | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Generated cells as arrays, without writing files (for quick experiments and tests).

    Args:
        layout: ``aml-lmu``, ``bm-mll`` or ``folder`` (sets the class names and field of view).
        per_class: cells per class.
        seed: random seed.
        size: image side in pixels (default: the layout's real size).
        classes: a subset of the layout's classes (default: all).

    Returns:
        ``(images, labels)``: uint8 (N, size, size, 3) RGB and the N class names, class by class.
    """
    import numpy as np

    size = size or DEFAULT_SIZE[layout]
    names = layout_classes(layout)
    classes = classes or names
    out, labels = [], []
    for cls in classes:
        ci = names.index(cls)
        for _, rgb, _ in _class_chunks(layout, ci, cls, per_class, seed, size):
            out.append(rgb)
            labels += [cls] * len(rgb)
    return np.concatenate(out), labels


def _class_chunks(layout: str, ci: int, cls: str, count: int, seed: int, size: int):
    import numpy as np

    lay = LAYOUTS.index(layout)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        rng = np.random.default_rng([seed, lay, ci, start // CHUNK])
        rgb, mask = render_cells(cls, n, size, rng, FIELD_UM[layout], return_mask=layout == "aml-lmu")
        yield start, rgb, mask


# --------------------------------------------------------------------------------------------
# Writing the layouts
# --------------------------------------------------------------------------------------------


def range_folder(index: int, count: int, range_size: int = 1000) -> str:
    """The BM-MLL range folder of cell ``index`` (1-based) in a class of ``count`` cells."""
    start = (index - 1) // range_size * range_size + 1
    end = min(start + range_size - 1, count)
    return f"{start:04d}-{end:04d}"


def _reannotations(rng: np.random.Generator, golds: list[str], classes: list[str]) -> list[tuple[str, str]]:
    """Re-annotations for about 15% of the cells: mostly agreeing, a few disagreeing, some UNC."""
    n = len(golds)
    out = [("nan", "nan")] * n
    m = max(min(5, n), int(round(0.15 * n)))
    chosen = sorted(rng.choice(n, size=m, replace=False).tolist())
    for j, i in enumerate(chosen):
        g = golds[i]
        pair = []
        for p_agree in (0.75, 0.85):
            x = rng.uniform()
            if x < p_agree:
                pair.append(g)
            elif x < p_agree + 0.06:
                pair.append("UNC")
            else:
                pair.append(str(rng.choice([c for c in classes if c != g])))
        # guarantee the cases a reader must handle: a disagreement and an UNC
        if j == 0:
            pair[0] = str(rng.choice([c for c in classes if c != g]))
        if j == 1:
            pair[1] = "UNC"
        out[i] = (pair[0], pair[1])
    return out


def _write_class(job: tuple) -> list[tuple[str, str]]:
    """Render and write every cell of one class (a unit of work for the process pool)."""
    import numpy as np
    from PIL import Image

    out_s, layout, ci, cls, per_class, seed, size, range_size = job
    out = Path(out_s)
    written = []
    for start, rgb, mask in _class_chunks(layout, ci, cls, per_class, seed, size):
        for j in range(len(rgb)):
            idx = start + j + 1
            if layout == "aml-lmu":
                rel = f"{AML_DIR}/{cls}/{cls}_{idx:04d}.tiff"
                # alpha: opaque over the cell, a soft fall-off towards the corners
                assert mask is not None
                alpha = np.clip(0.8 + 0.6 * mask[j], 0, 1) * 255
                arr = np.dstack([rgb[j], alpha.round().astype(np.uint8)])
                img = Image.fromarray(arr, mode="RGBA")
                fmt, kw = "TIFF", {}
            elif layout == "bm-mll":
                sub = f"{range_folder(idx, per_class, range_size)}/" if per_class > range_size else ""
                rel = f"{BM_DIR}/{cls}/{sub}{cls}_{idx:05d}.jpg"
                img = Image.fromarray(rgb[j], mode="RGB")
                fmt, kw = "JPEG", {"quality": 92}
            else:
                rel = f"{cls}/{cls}_{idx:04d}.png"
                img = Image.fromarray(rgb[j], mode="RGB")
                fmt, kw = "PNG", {"compress_level": 1}
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, format=fmt, **kw)
            written.append((rel, cls))
    return written


def synthesize(
    out: str | Path,
    layout: str,
    per_class: int,
    seed: int,
    size: int | None = None,
    range_size: int = 1000,
    classes: list[str] | None = None,
    progress: bool = False,
    workers: int = 1,
) -> Path:
    """Write generated cells in the layout of a real dataset.

    Args:
        out: destination folder (created; files of an earlier run with other settings are not removed).
        layout: ``aml-lmu``, ``bm-mll`` or ``folder``.
        per_class: cells per class.
        seed: random seed (same seed, same files).
        size: image side in pixels (default 400 for aml-lmu, 250 for bm-mll, 256 for folder).
        range_size: BM-MLL classes with more cells than this are split into range folders.
        classes: a subset of the layout's classes (default all).
        progress: show a progress bar on stderr.
        workers: processes drawing classes in parallel (the files do not depend on it).

    Returns:
        The PATH to give to the matching source (``out`` itself: the top folder as downloaded).
    """
    import numpy as np

    if layout not in LAYOUTS:
        raise SynthError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if per_class < 1:
        raise SynthError(f"per_class must be >= 1 (got {per_class})")
    if range_size < 1:
        raise SynthError(f"range_size must be >= 1 (got {range_size})")
    size = int(size or DEFAULT_SIZE[layout])
    if size < 16:
        raise SynthError(f"size must be >= 16 px (got {size})")
    names = layout_classes(layout)
    classes = classes or names
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise SynthError(f"classes {unknown} are not in layout {layout} ({', '.join(names)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per_class * len(classes), desc=f"synth {layout}", unit="img", file=sys.stderr)
    written: list[tuple[str, str]] = []  # (relative path, label)
    jobs = [(str(out), layout, names.index(cls), cls, per_class, seed, size, range_size) for cls in classes]
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for part in pool.map(_write_class, jobs):  # results in class order: deterministic files
                written.extend(part)
                if bar is not None:
                    bar.update(len(part))
    else:
        for job in jobs:
            part = _write_class(job)
            written.extend(part)
            if bar is not None:
                bar.update(len(part))
    if bar is not None:
        bar.close()

    rng = np.random.default_rng([seed, LAYOUTS.index(layout), 9999])
    if layout == "aml-lmu":
        re = _reannotations(rng, [lab for _, lab in written], names)
        with open(out / "annotations.dat", "w", encoding="utf-8") as fh:
            for (rel, lab), (r1, r2) in zip(written, re, strict=True):
                fh.write(f"{rel} {lab} {r1} {r2}\n")
        with open(out / "abbreviations.txt", "w", encoding="utf-8") as fh:
            for abbr in names:
                fh.write(f"{abbr}\t{AML_LMU_CLASSES[abbr]}\n")
    elif layout == "bm-mll":
        with open(out / "abbreviations.csv", "w", encoding="utf-8", newline="") as fh:
            fh.write("Abbreviation;Meaning\n")
            for abbr in names:
                fh.write(f"{abbr};{BM_MLL_CLASSES[abbr]}\n")
    else:
        with open(out / "manifest.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["path", "label", "sha256"])
            for rel, lab in written:
                w.writerow([rel, lab, hashlib.sha256((out / rel).read_bytes()).hexdigest()])
    return out


def cache_dir(layout: str, per_class: int, seed: int = 0) -> Path:
    """Where :func:`ensure_cached` keeps a generated dataset."""
    base = os.environ.get("SSL_CYTO_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "ssl_cyto"
    return root / "synth" / f"{layout}-{per_class}-{seed}"


def ensure_cached(layout: str, per_class: int = 50, seed: int = 0) -> Path:
    """Generate a dataset once into the cache and reuse it afterwards.

    The cache folder is ``$SSL_CYTO_CACHE/synth/<layout>-<per_class>-<seed>`` (or under
    ``~/.cache/ssl_cyto``). A marker file records the generator version; a cache written by another
    version is regenerated. Generation goes to a temporary folder renamed into place, so concurrent
    callers never see a half-written dataset.

    Returns:
        The PATH to give to the matching source.
    """
    target = cache_dir(layout, per_class, seed)
    marker = target / ".complete"
    if marker.exists() and marker.read_text().strip() == GENERATOR_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    synthesize(tmp, layout, per_class, seed)
    (tmp / ".complete").write_text(GENERATOR_VERSION + "\n")
    if target.exists():
        if (target / ".complete").exists() and (
            target / ".complete"
        ).read_text().strip() == GENERATOR_VERSION:
            shutil.rmtree(tmp)  # another process finished first
            return target
        shutil.rmtree(target)
    try:
        os.replace(tmp, target)
    except OSError:
        if not marker.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data synth``."""
    parser.add_argument("out", help="destination folder (the PATH to give to the matching source)")
    parser.add_argument("--layout", choices=LAYOUTS, required=True, help="which real layout to mirror")
    parser.add_argument("--per-class", type=int, default=20, help="cells per class (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=None, help="image side in px (default: the real size)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="parallel processes (default: up to 4)",
    )
    parser.add_argument(
        "--range-size",
        type=int,
        default=1000,
        help="bm-mll: cells per range folder (default 1000, as released)",
    )


def main(args: argparse.Namespace) -> int:
    """``ssl-cyto data synth OUT --layout L --per-class N --seed S [--size PX]``."""
    t0 = time.perf_counter()
    try:
        out = synthesize(
            args.out,
            args.layout,
            args.per_class,
            args.seed,
            size=args.size,
            range_size=args.range_size,
            progress=True,
            workers=args.workers,
        )
    except (SynthError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    n = args.per_class * len(layout_classes(args.layout))
    print(f"wrote {n} {args.layout} cells to {out} in {dt:.1f} s ({n / dt:.0f} images/s)")
    print(f"read them with: ssl-cyto data scan {args.layout}={out} --out catalog.parquet")
    return 0
