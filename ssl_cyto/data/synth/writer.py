"""Writing generated cells in the real layouts: image trees and their side files.

* ``aml-lmu``: RGBA TIFFs (alpha 255 over the cell, falling off softly towards the corners),
  ``annotations.dat`` (``path gold reannot1 reannot2``; ``nan`` for cells that were not re-annotated,
  ``UNC`` for "unassignable", and a few disagreements) and ``abbreviations.txt``.
* ``bm-mll``: RGB JPEGs, classes with more than ``range_size`` cells split into range folders
  ``0001-1000``, ``1001-2000``, ... (the last one ending at the class count), ``abbreviations.csv``
  (``Abbreviation;Meaning``).
* ``folder``: PNGs and a ``manifest.csv`` (``path,label,sha256``).
"""

from __future__ import annotations

import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ssl_cyto.data.synth.layouts import (
    AML_DIR,
    BM_DIR,
    DEFAULT_SIZE,
    LAYOUTS,
    SynthError,
    layout_classes,
    range_folder,
)
from ssl_cyto.data.synth.render import class_chunks
from ssl_cyto.data.vocabulary import AML_LMU_CLASSES, BM_MLL_CLASSES
from ssl_cyto.formats.annotations import ANNOTATIONS_NAME, UNASSIGNABLE
from ssl_cyto.formats.errors import OutputError
from ssl_cyto.formats.hashing import sha256_file

# (out folder, layout, class index, class, cells, seed, size, range size): one process-pool job
ClassJob = tuple[str, str, int, str, int, int, int, int]


def reannotations(rng: np.random.Generator, golds: list[str], classes: list[str]) -> list[tuple[str, str]]:
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
                pair.append(UNASSIGNABLE)
            else:
                pair.append(str(rng.choice([c for c in classes if c != g])))
        # guarantee the cases a reader must handle: a disagreement and an UNC
        if j == 0:
            pair[0] = str(rng.choice([c for c in classes if c != g]))
        if j == 1:
            pair[1] = UNASSIGNABLE
        out[i] = (pair[0], pair[1])
    return out


def write_class(job: ClassJob) -> list[tuple[str, str]]:
    """Render and write every cell of one class (a unit of work for the process pool).

    Returns:
        ``(relative path, label)`` of the files written, in cell order.
    """
    out_s, layout, ci, cls, per_class, seed, size, range_size = job
    out = Path(out_s)
    written = []
    for start, rgb, mask in class_chunks(layout, ci, cls, per_class, seed, size):
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


def write_side_files(out: Path, layout: str, seed: int, written: list[tuple[str, str]]) -> None:
    """The files beside the images: annotations and abbreviations, or the folder manifest."""
    names = layout_classes(layout)
    rng = np.random.default_rng([seed, LAYOUTS.index(layout), 9999])
    if layout == "aml-lmu":
        re = reannotations(rng, [lab for _, lab in written], names)
        with open(out / ANNOTATIONS_NAME, "w", encoding="utf-8") as fh:
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
                w.writerow([rel, lab, sha256_file(out / rel)])


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

    Raises:
        SynthError: an unknown layout or class, or a non-positive count or size.
        OutputError: ``out`` cannot be created or written.
    """
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
    jobs = [(str(out), layout, names.index(cls), cls, per_class, seed, size, range_size) for cls in classes]
    bar = (
        tqdm(total=per_class * len(classes), desc=f"synth {layout}", unit="img", file=sys.stderr)
        if progress
        else None
    )
    written: list[tuple[str, str]] = []  # (relative path, label)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                parts = pool.map(write_class, jobs)  # results in class order: deterministic files
                for part in parts:
                    written.extend(part)
                    if bar is not None:
                        bar.update(len(part))
        else:
            for job in jobs:
                part = write_class(job)
                written.extend(part)
                if bar is not None:
                    bar.update(len(part))
        write_side_files(out, layout, seed, written)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot write the generated cells ({exc}); choose a writable folder"
        ) from exc
    finally:
        if bar is not None:
            bar.close()
    return out
