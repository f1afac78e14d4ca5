"""Geometry and texture primitives of the cell renderer (vectorised numpy over a batch of cells).

Signed distance fields (soft masks, capsules, radial harmonics, the nucleus of each class shape) and
band-limited noise / granule textures on a cached pixel grid.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter

from ssl_cyto.data.synth.layouts import SynthError
from ssl_cyto.data.synth.morph import Morph


class Grid:
    """Pixel coordinates and bilinear-upsampling tables for one image size (cached)."""

    _cache: ClassVar[dict[int, Grid]] = {}

    def __init__(self, size: int) -> None:
        self.size = size
        ax = np.arange(size, dtype=np.float32) + 0.5
        self.x = ax[None, :]
        self.y = ax[:, None]
        self._up: dict[int, tuple[Any, ...]] = {}

    @classmethod
    def get(cls, size: int) -> Grid:
        """The grid of ``size`` pixels (built once per process)."""
        if size not in cls._cache:
            cls._cache[size] = cls(size)
        return cls._cache[size]

    def noise(self, rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
        """Band-limited noise (n, S, S), roughly unit variance, with features about ``cell`` px wide.

        Small scales: Gaussian-filtered white noise (isotropic); large scales: smooth value noise on
        a coarse grid (cheaper, and its grid is invisible at that size).
        """
        cell = max(1.0, float(cell))
        if cell <= 6.0:
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
        radius = max(0.7, float(radius))
        p = min(0.5, density / (math.pi * radius * radius))
        imp = (rng.random((n, self.size, self.size), dtype=np.float32) < p).astype(np.float32)
        imp *= rng.uniform(0.6, 1.4, imp.shape).astype(np.float32)
        sigma = radius / 1.2
        blob = gaussian_filter(imp, sigma=(0, sigma, sigma), mode="wrap", truncate=2.5)
        peak = 1.0 / (2 * math.pi * sigma * sigma)
        return np.clip(blob / np.float32(peak * 0.6), 0.0, 1.0)


def soft_inside(d: np.ndarray, edge: float) -> np.ndarray:
    """Soft inside-mask of a signed distance (negative inside)."""
    return 0.5 - 0.5 * np.tanh(d * np.float32(0.5 / edge))


def col(a: Any) -> np.ndarray:
    """Per-image values ``(n,)`` as ``(n, 1, 1)`` float32, to broadcast over the pixels."""
    return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)


def capsule(u: np.ndarray, v: np.ndarray, a: tuple, b: tuple, r: np.ndarray) -> np.ndarray:
    """Signed distance to capsules from a to b (per image (n,) endpoints) with radius r."""
    ax, ay = col(a[0]), col(a[1])
    bx, by = col(b[0]), col(b[1])
    px, py = u - ax, v - ay
    dx, dy = bx - ax, by - ay
    h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return np.hypot(px - h * dx, py - h * dy) - col(r)


def harmonics(rng: np.random.Generator, n: int, th: np.ndarray, amp: float, kmax: int = 5) -> np.ndarray:
    """Random smooth radial perturbation 1 + sum_k a_k cos(k th + phi_k), k = 2..kmax.

    cos(k th) and sin(k th) come from the angle-addition recurrence (two trig calls in all).
    """
    c1, s1 = np.cos(th), np.sin(th)
    ck, sk = c1, s1
    out = np.ones_like(th)
    for k in range(2, kmax + 1):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        a = rng.normal(0, amp / math.sqrt(k - 1), n)
        phi = rng.uniform(0, 2 * np.pi, n)
        # a cos(k th + phi) = a cos(phi) cos(k th) - a sin(phi) sin(k th)
        out += col(a * np.cos(phi)) * ck - col(a * np.sin(phi)) * sk
    return out


def nucleus_sdf(
    m: Morph, rng: np.random.Generator, n: int, u: np.ndarray, v: np.ndarray, rn: np.ndarray
) -> np.ndarray:
    """Signed distance to the nucleus in nucleus-centred coordinates; rn: (n,) nucleus radius."""
    Rn = col(rn)
    kind = m.nucleus
    if kind in ("round", "oval", "kidney", "smudge"):
        e = {"round": (0.0, 0.08), "oval": (0.1, 0.25), "kidney": (0.05, 0.15), "smudge": (0.2, 0.4)}[kind]
        ecc = col(rng.uniform(*e, n))
        uu, vv = u / (1 + ecc), v / (1 - ecc)
        r = np.hypot(uu, vv)
        th = np.arctan2(vv, uu)
        amp = {"round": 0.025, "oval": 0.03, "kidney": 0.04, "smudge": 0.18}[kind]
        d = r - Rn * harmonics(rng, n, th, amp)
        if kind == "kidney":
            off = col(rng.uniform(0.85, 1.15, n)) * Rn
            ri = col(rng.uniform(0.45, 0.7, n)) * Rn
            d_in = np.hypot(u - off, v) - ri
            d = np.maximum(d, -d_in)
        return d
    if kind == "band":
        rho = Rn * col(rng.uniform(0.6, 0.8, n))
        t = Rn * col(rng.uniform(0.24, 0.32, n))
        half = col(np.radians(rng.uniform(100, 150, n)))
        r = np.hypot(u, v)
        th = np.arctan2(v, -u)  # 0 points along -u: the arc opens towards +u
        inside = np.abs(th) <= half
        e1 = (-rho * np.cos(half), rho * np.sin(half))
        d_end = np.minimum(np.hypot(u - e1[0], v - e1[1]), np.hypot(u - e1[0], v + e1[1]))
        width = t * (1 + 0.25 * np.cos(th * 2.5 + col(rng.uniform(0, 6.3, n))))
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
                sx = col(rng.uniform(0.5, 1.0, n))
                dj = np.hypot((u - col(cx)) * sx, v - col(cy)) - col(rj)
            else:
                dj = np.hypot(u - col(cx), v - col(cy)) - col(rj)
            d = np.minimum(d, dj)
            if prev is not None and kind != "scattered":
                rc = np.where(active, rl * m.connector, -1e4)
                d = np.minimum(d, capsule(u, v, prev, (cx, cy), rc))
            prev = (cx, cy)
        return d
    if kind == "none":
        return np.full(u.shape, 1e4, dtype=np.float32)
    raise SynthError(f"unknown nucleus kind {kind!r}")
