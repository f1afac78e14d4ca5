"""Scanning sources into a catalog: one row per cell (columns of :mod:`ssl_cyto.formats.catalog`).

``ssl-cyto data scan aml-lmu=/data/AML-Cytomorphology_LMU bm-mll=/data/BM folder:pbc=/data/pbc --out
catalog.parquet`` is :func:`scan_sources` followed by :func:`~ssl_cyto.formats.catalog.write_catalog`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ssl_cyto.data.images import IMAGE_EXTENSIONS
from ssl_cyto.data.sources import CellRecord, SourceError, detect_source, open_source, parse_kind
from ssl_cyto.formats.catalog import CatalogError, catalog_frame, read_catalog
from ssl_cyto.formats.errors import MissingInputError
from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.formats.progress import progress_bar

HASH_WORKERS = 4  # threads: hashing is I/O bound


def parse_spec(text: str) -> tuple[str, str]:
    """``"KIND=PATH"`` -> ``(kind, path)``, the kind checked against the source registry.

    Raises:
        SourceError: no ``=``, an empty path or an unknown kind.
    """
    kind, sep, path = text.partition("=")
    if not sep or not path:
        raise SourceError(f"{text!r}: expected SOURCE=PATH (SOURCE: aml-lmu, bm-mll, folder or folder:NAME)")
    parse_kind(kind)
    return kind, path


def hash_missing(df: pd.DataFrame, workers: int = HASH_WORKERS, progress: bool = True) -> None:
    """Fill the missing ``sha256`` values of a catalog in place (threads: hashing is I/O bound)."""
    todo = [i for i, v in enumerate(df["sha256"].tolist()) if v is None or v != v]
    if not todo:
        return
    roots, rels = df["root"].tolist(), df["path"].tolist()
    paths = [str(Path(str(roots[i])) / str(rels[i])) for i in todo]
    digests = []
    with (
        progress_bar(total=len(paths), desc="sha256", unit="file", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for d in pool.map(sha256_file, paths, chunksize=64):
            digests.append(d)
            bar.update(1)
    col = df["sha256"].astype(object).tolist()
    for i, d in zip(todo, digests, strict=True):
        col[i] = d
    df["sha256"] = col


def scan_sources(
    specs: list[tuple[str, str]],
    verify: bool = True,
    hash_all: bool = False,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """List the cells of several sources.

    Args:
        specs: ``(kind, path)`` pairs; kind is a registered source kind or ``folder:NAME``.
        verify: verify folder manifests (SHA-256 of every listed file).
        hash_all: compute the SHA-256 of every file, not only of verified folder sources.
        progress: progress output on stderr.

    Returns:
        ``(catalog, problems)``: the DataFrame with exactly ``CATALOG_COLUMNS`` and
        ``{source name: [problem lines]}``.

    Raises:
        SourceError: a source holds no image at all (an empty folder is a mistake, not a 0-cell catalog).
        CatalogError: two sources produce the same ``cell_id`` (the same folder given twice, or two
            folder sources with the same name: use ``folder:NAME=PATH``).
    """
    rows: list[dict] = []
    problems: dict[str, list[str]] = {}
    for kind, path in specs:
        src = open_source(kind, path, verify=verify)
        n0 = len(rows)
        it: Iterable[CellRecord] = src.records()
        if progress:
            it = progress_bar(it, desc=f"scan {src.name}", unit="file")
        rows.extend(r.as_dict() for r in it)
        if src.name in problems:
            raise CatalogError(
                f"source {src.name!r} given twice ({path}); give folder sources distinct names with folder:NAME=PATH"
            )
        problems[src.name] = list(src.problems)
        if len(rows) == n0:
            raise SourceError(
                f"{kind}={path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
                "hidden files and folders skipped); check the path, or give the folder that holds the images"
            )
    df = catalog_frame(rows)
    dup = df["cell_id"][df["cell_id"].duplicated()]
    if len(dup):
        raise CatalogError(
            f"duplicate cell_id {dup.iloc[0]!r} ({len(dup)} duplicates): is a folder scanned twice?"
        )
    if hash_all:
        hash_missing(df, progress=progress)
    return df, problems


def scan(specs: list[tuple[str, str]], verify: bool = True, hash_all: bool = False) -> pd.DataFrame:
    """The catalog of several sources (see :func:`scan_sources`); problems in ``df.attrs["problems"]``."""
    df, problems = scan_sources(specs, verify=verify, hash_all=hash_all)
    df.attrs["problems"] = problems
    return df


def catalog_from_path(path: str | os.PathLike) -> pd.DataFrame:
    """A catalog from a ``.parquet`` file, or by scanning a folder whose kind is detected.

    Raises:
        MissingInputError: neither a catalog file nor a folder.
    """
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".parquet":
        return read_catalog(p)
    if p.is_dir():
        return scan([(detect_source(p), str(p))])
    raise MissingInputError(f"{p}: neither a catalog .parquet file nor a dataset folder")


def counts_table(df: pd.DataFrame) -> str:
    """A plain-text table of cells per source and label."""
    if df.empty:
        return "(no cells)"
    labels = df["label"].fillna("(none)")
    counts = df.assign(label=labels).groupby(["source", "label"]).size()
    lines = [f"{'source':<28} {'label':<14} {'cells':>8}"]
    for source, sub in counts.groupby(level=0):
        for (_, label), n in sub.items():
            lines.append(f"{source:<28} {label:<14} {n:>8}")
        lines.append(f"{source:<28} {'TOTAL':<14} {int(sub.sum()):>8}")
    lines.append(f"{'ALL':<28} {'':<14} {len(df):>8}")
    return "\n".join(lines)
