"""Drawing cells: :func:`render_cells` (one class, a batch of cells) and :func:`generate_arrays`.

How a cell is drawn (all vectorised numpy over a batch of cells of one class):

1. Signed distance fields give the cell outline (radius with random low-order harmonics, "hairy"
   projections for hairy cells) and the nucleus, whose *shape* depends on the class (see
   :func:`ssl_cyto.data.synth.shapes.nucleus_sdf`).
2. Texture: chromatin is modulated by band-limited noise whose scale and contrast depend on the class;
   cytoplasm carries granules, vacuoles, Auer rods, a pale perinuclear hof.
3. Two stain densities (azure/haematoxylin-like and eosin-like) are turned into RGB with Beer-Lambert
   absorption, with stain vectors, strength, background tint and illumination randomised per image.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageFilter

from ssl_cyto.data.synth.layouts import CHUNK, DEFAULT_SIZE, FIELD_UM, LAYOUTS, layout_classes
from ssl_cyto.data.synth.morph import CHROMATIN, morph_of
from ssl_cyto.data.synth.shapes import Grid, capsule, col, harmonics, nucleus_sdf, soft_inside


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
    m = morph_of(label)
    S_out = int(size)
    S_int = min(S_out, int(max_render))
    G = Grid.get(S_int)
    S = float(S_int)
    ppu = S / field_um
    edge = max(0.5, S / 300.0)
    R = m.diameter_um / 2 * ppu * rng.normal(1.0, 0.09, n).clip(0.75, 1.25)
    Rm = float(R.mean())
    cx = S / 2 + rng.normal(0, 0.025 * S, n)
    cy = S / 2 + rng.normal(0, 0.025 * S, n)
    rot = rng.uniform(0, 2 * np.pi, n)
    dx = G.x[None] - col(cx)
    dy = G.y[None] - col(cy)
    c, s = col(np.cos(rot)), col(np.sin(rot))
    u = c * dx + s * dy
    v = c * dy - s * dx
    r = np.hypot(u, v)
    th = np.arctan2(v, u)
    Rc = col(R)

    # --- cell outline
    rad = harmonics(rng, n, th, m.irregular)
    if m.hairy:
        kh = col(rng.integers(14, 24, n))
        hair = np.maximum(np.cos(kh * th + col(rng.uniform(0, 6.3, n))), 0) ** 6
        rad = rad + 0.18 * hair * (1 + 0.5 * G.noise(rng, n, S / 12))
    d_cell = r - Rc * rad
    cell = soft_inside(d_cell, edge)

    # --- nucleus: shape from the class, chromatin texture from the class
    rn = R * m.nuc_frac * rng.normal(1.0, 0.06, n).clip(0.8, 1.2)
    off = col(R * m.eccentric * rng.uniform(0.7, 1.2, n))
    nu, nv = u - off, v
    d_nuc = nucleus_sdf(m, rng, n, nu, nv, rn)
    nuc = soft_inside(d_nuc, edge * 1.2) * (1.0 if m.no_cytoplasm else cell)
    dens0, scale, amp = CHROMATIN[m.chromatin]
    dens = dens0 * rng.uniform(0.85, 1.15, n)
    tex = G.noise(rng, n, scale * Rm)
    if m.chromatin == "streaky":  # smeared: texture stretched along one direction
        tex = 0.5 * tex + 0.5 * np.roll(tex, max(1, int(Rm * 0.08)), axis=2)
    fine = G.noise(rng, n, max(1.0, 0.02 * Rm))
    chrom = col(dens) * (1 + amp * np.tanh(tex) + 0.12 * np.tanh(fine))
    if m.chromatin == "clumped":  # dark clumps separated by paler parachromatin
        chrom = chrom + col(dens) * 0.5 * G.dots(rng, n, 0.07 * Rm, 0.35)
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
            spot = soft_inside(np.hypot(nu - col(rr * np.cos(a)), nv - col(rr * np.sin(a))) - col(rj), edge)
            azure = azure * (1 - 0.6 * spot) + 0.1 * spot * nuc

    # --- cytoplasm: class mean colour plus a per-image spread about as large as the class differences
    cyto = cell * (1 - nuc) if not m.no_cytoplasm else np.zeros_like(cell)
    blue = np.clip(m.cyto_blue + rng.normal(0, 0.12, n), 0.03, None)
    pink = np.clip(m.cyto_pink + rng.normal(0, 0.08, n), 0.02, None)
    ctex = 1 + 0.15 * G.noise(rng, n, Rm * 0.3)
    cb = cyto * col(blue) * ctex
    cp = cyto * col(pink) * ctex
    if m.hof:
        d_hof = np.hypot(nu + col(rn * 0.6), nv) - col(rn * 1.05)
        hof = soft_inside(d_hof, edge * 3) * cyto
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
            vac = (
                soft_inside(np.hypot(u - col(rr * np.cos(a)), v - col(rr * np.sin(a))) - col(rj), edge) * cyto
            )
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
            rod = soft_inside(capsule(u, v, p0, p1, rw), edge * 0.8) * cell
            cb = cb + 0.55 * rod
            cp = cp + 0.9 * rod
    azure = azure + cb
    eosin = eosin + cp
    if m.nucleus == "none":  # artefact: amorphous debris
        blob = cell * np.clip(0.5 + 0.8 * G.noise(rng, n, Rm * 0.2), 0, None)
        azure = azure + blob * col(rng.uniform(0.1, 0.5, n))
        eosin = eosin + blob * col(rng.uniform(0.1, 0.5, n))
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
        dd = np.hypot(G.x[None] - col(bx), G.y[None] - col(by))
        disc = soft_inside(dd - col(rj), edge * 1.2)
        pallor = soft_inside(dd - col(rj * 0.5), rbc_r * 0.2)
        rbc = np.maximum(rbc, disc * (1 - 0.5 * pallor))
    outside = 1 - cell
    eosin = eosin + col(rng.uniform(0.4, 0.6, n)) * rbc * outside
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
    fall = 1 - col(rng.uniform(0, 0.18, n)) * ((G.x[None] - col(gx)) ** 2 + (G.y[None] - col(gy)) ** 2) / S**2
    np.negative(od, out=od)
    np.exp(od, out=od)
    img = od
    img *= bg[:, None, None, :].astype(np.float32)
    img *= fall[..., None]
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    mask = cell.astype(np.float32) if return_mask else None
    if S_int != S_out or m.blur > 0:
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
    size = size or DEFAULT_SIZE[layout]
    names = layout_classes(layout)
    classes = classes or names
    out, labels = [], []
    for cls in classes:
        ci = names.index(cls)
        for _, rgb, _ in class_chunks(layout, ci, cls, per_class, seed, size):
            out.append(rgb)
            labels += [cls] * len(rgb)
    return np.concatenate(out), labels


def class_chunks(
    layout: str, ci: int, cls: str, count: int, seed: int, size: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Cells ``0..count-1`` of class ``cls`` (index ``ci`` in the layout) in chunks of :data:`CHUNK`.

    Chunk ``k`` is drawn from ``np.random.default_rng([seed, layout index, ci, k])``, so a class's
    cells do not depend on the other classes or on the process that draws them.

    Yields:
        ``(start, rgb, mask)``: index of the chunk's first cell, its images and (aml-lmu) masks.
    """
    lay = LAYOUTS.index(layout)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        rng = np.random.default_rng([seed, lay, ci, start // CHUNK])
        rgb, mask = render_cells(cls, n, size, rng, FIELD_UM[layout], return_mask=layout == "aml-lmu")
        yield start, rgb, mask
