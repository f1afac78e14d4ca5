"""The catalog: one row per cell of one or more sources, saved as Parquet.

Columns (:data:`CATALOG_COLUMNS`, a contract with every later step): ``cell_id`` (``source/path``,
unique and stable), ``source``, ``path`` (relative to ``root``, POSIX), ``root``, ``label`` (gold label,
null if none), ``reannot1``, ``reannot2`` (null if none), ``um_per_px`` (null if unknown), ``sha256``
(null where not computed). The absolute image path of a row is ``Path(root) / path``.

CLI::

    ssl-cyto data scan aml-lmu=/data/AML-Cytomorphology_LMU bm-mll=/data/BM folder:pbc=/data/pbc \\
        --out catalog.parquet [--problems problems.txt] [--hash] [--no-verify]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ssl_cyto.data.sources import (
    CellRecord,
    CellSource,
    SourceError,
    detect_source,
    open_source,
    parse_kind,
    sha256_file,
)

if TYPE_CHECKING:
    import pandas as pd

CATALOG_COLUMNS = [
    "cell_id",
    "source",
    "path",
    "root",
    "label",
    "reannot1",
    "reannot2",
    "um_per_px",
    "sha256",
]


class CatalogError(ValueError):
    """A catalog that cannot be built, read or written (duplicate ids, missing columns...)."""


def _schema():
    import pyarrow as pa

    fields = [(c, pa.string()) for c in CATALOG_COLUMNS]
    fields[CATALOG_COLUMNS.index("um_per_px")] = ("um_per_px", pa.float64())
    return pa.schema(fields)


def _hash_all(df: pd.DataFrame, workers: int = 4, progress: bool = True) -> None:
    """Fill missing sha256 values in place (threads: hashing is I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [i for i, v in enumerate(df["sha256"].tolist()) if v is None or v != v]
    if not todo:
        return
    roots, rels = df["root"].tolist(), df["path"].tolist()
    paths = [str(Path(str(roots[i])) / str(rels[i])) for i in todo]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="sha256", unit="file", file=sys.stderr)
    digests = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for d in pool.map(sha256_file, paths, chunksize=64):
            digests.append(d)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
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
        specs: ``(kind, path)`` pairs; kind is ``aml-lmu``, ``bm-mll``, ``folder`` or ``folder:NAME``.
        verify: verify folder manifests (SHA-256 of every listed file).
        hash_all: compute the SHA-256 of every file, not only of verified folder sources.
        progress: progress output on stderr.

    Returns:
        ``(catalog, problems)``: the DataFrame with exactly :data:`CATALOG_COLUMNS` and
        ``{source name: [problem lines]}``.

    Raises:
        CatalogError: two sources produce the same ``cell_id`` (the same folder given twice, or two
            folder sources with the same name: use ``folder:NAME=PATH``).
    """
    import pandas as pd

    rows: list[dict] = []
    problems: dict[str, list[str]] = {}
    for kind, path in specs:
        src: CellSource = open_source(kind, path, verify=verify)
        n0 = len(rows)
        it: Iterable[CellRecord] = src.records()
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"scan {src.name}", unit="file", file=sys.stderr)
        rows.extend(r.as_dict() for r in it)
        if src.name in problems:
            raise CatalogError(
                f"source {src.name!r} given twice ({path}); give folder sources distinct names with folder:NAME=PATH"
            )
        problems[src.name] = list(src.problems)
        if len(rows) == n0:
            problems[src.name].append(f"no images found under {path}")
    df = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    df["um_per_px"] = df["um_per_px"].astype("float64")
    for c in CATALOG_COLUMNS:
        if c != "um_per_px":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    dup = df["cell_id"][df["cell_id"].duplicated()]
    if len(dup):
        raise CatalogError(
            f"duplicate cell_id {dup.iloc[0]!r} ({len(dup)} duplicates): is a folder scanned twice?"
        )
    if hash_all:
        _hash_all(df, progress=progress)
    return df, problems


def scan(specs: list[tuple[str, str]], verify: bool = True, hash_all: bool = False) -> pd.DataFrame:
    """The catalog of several sources (see :func:`scan_sources`); problems in ``df.attrs["problems"]``."""
    df, problems = scan_sources(specs, verify=verify, hash_all=hash_all)
    df.attrs["problems"] = problems
    return df


def write_catalog(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a catalog to Parquet (columns checked, fixed schema: strings and float64 ``um_per_px``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"catalog lacks columns {missing}; expected {CATALOG_COLUMNS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df[CATALOG_COLUMNS], schema=_schema(), preserve_index=False)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read a catalog written by :func:`write_catalog` (columns checked)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such catalog; make one with `ssl-cyto data scan ... --out {path}`"
        )
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - reported with the file name
        raise CatalogError(f"{path}: cannot read as Parquet ({exc})") from exc
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: not a catalog, lacks columns {missing}; expected {CATALOG_COLUMNS}")
    df = df[CATALOG_COLUMNS].copy()
    for c in CATALOG_COLUMNS:
        if c != "um_per_px":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def catalog_from_path(path: str | Path) -> pd.DataFrame:
    """A catalog from a ``.parquet`` file, or by scanning a folder whose kind is detected."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".parquet":
        return read_catalog(p)
    if p.is_dir():
        return scan([(detect_source(p), str(p))])
    raise FileNotFoundError(f"{p}: neither a catalog .parquet file nor a dataset folder")


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


def _parse_spec(text: str) -> tuple[str, str]:
    kind, sep, path = text.partition("=")
    if not sep or not path:
        raise SourceError(f"{text!r}: expected SOURCE=PATH (SOURCE: aml-lmu, bm-mll, folder or folder:NAME)")
    parse_kind(kind)
    return kind, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto data scan``."""
    parser.add_argument(
        "specs",
        nargs="+",
        metavar="SOURCE=PATH",
        help="SOURCE: aml-lmu, bm-mll, folder or folder:NAME; PATH: the dataset folder as downloaded",
    )
    parser.add_argument("--out", required=True, help="catalog Parquet file to write")
    parser.add_argument("--problems", default=None, help="write every problem line to this file")
    parser.add_argument(
        "--hash", action="store_true", help="compute the SHA-256 of every file (slow on 190k)"
    )
    parser.add_argument("--no-verify", action="store_true", help="do not hash files listed in manifest.csv")


def main(args: argparse.Namespace) -> int:
    """``ssl-cyto data scan SOURCE=PATH ... --out catalog.parquet``."""
    try:
        specs = [_parse_spec(s) for s in args.specs]
        df, problems = scan_sources(specs, verify=not args.no_verify, hash_all=args.hash, progress=True)
        write_catalog(df, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(counts_table(df))
    total = sum(len(v) for v in problems.values())
    print(f"\nproblems: {total}")
    for name, lines in problems.items():
        if lines:
            print(f"  {name}: {len(lines)}")
            for line in lines[:5]:
                print(f"    {line}")
            if len(lines) > 5:
                print(
                    f"    ... {len(lines) - 5} more"
                    + ("" if args.problems else " (write all with --problems FILE)")
                )
    if args.problems:
        Path(args.problems).parent.mkdir(parents=True, exist_ok=True)
        with open(args.problems, "w", encoding="utf-8") as fh:
            for name, lines in problems.items():
                for line in lines:
                    fh.write(f"{name}\t{line}\n")
        print(f"all problems written to {args.problems}")
    print(f"wrote {len(df)} cells to {args.out}")
    return 0
