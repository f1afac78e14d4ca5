"""What a ``data`` string points at: :func:`resolve_data` -> :class:`ResolvedData`.

``data`` (and ``val_data`` of :class:`~ssl_cyto.data.datamodule.CellDataModule`) may be any of:

* a shard folder (``index.json`` and/or ``cells-*.tar``, written by ``ssl-cyto pack``);
* a brace pattern or glob of shards (``shards/cells-{000000..000189}.tar``, ``shards/cells-*.tar``);
* a ``pipe:`` URL or a remote URL WebDataset can open (``pipe:aws s3 cp s3://b/cells-{000000..000189}.tar -``);
* a ``catalog.parquet`` or an image folder of any source layout (read with
  :func:`ssl_cyto.data.scanning.catalog_from_path`);
* ``synth:<layout>[:<per_class>]`` - generated cells, made once with
  :func:`ssl_cyto.data.synth.ensure_cached`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from webdataset.shardlists import expand_urls

from ssl_cyto.data.scanning import catalog_from_path
from ssl_cyto.data.synth import ensure_cached
from ssl_cyto.formats.errors import InputError, MissingInputError
from ssl_cyto.formats.shard_index import INDEX_NAME, is_shard_dir, read_index, shard_paths

DATA_FORMS = (
    "a shard folder (index.json / cells-*.tar), a brace pattern or glob of .tar shards, a pipe: URL, "
    "a catalog.parquet, an image folder, or synth:<layout>[:<per_class>]"
)


class DataSpecError(InputError):
    """A ``data`` argument (or a loading option) that cannot be used; the message says what to give."""


@dataclass
class ResolvedData:
    """What a ``data`` string points at.

    Attributes:
        kind: ``"shards"`` or ``"catalog"``.
        spec: the original string.
        urls: shard URLs/paths in index order (shards only).
        counts: cells per shard where known (from index.json), else None.
        sources: cells per source where known.
        catalog: the catalog DataFrame (catalog only).
    """

    kind: str
    spec: str
    urls: list[str] = field(default_factory=list)
    counts: list[int] | None = None
    sources: dict[str, int] | None = None
    catalog: pd.DataFrame | None = None

    @property
    def n_cells(self) -> int | None:
        """Number of cells, or None when unknown (remote shards without index.json)."""
        if self.kind == "catalog":
            assert self.catalog is not None
            return len(self.catalog)
        return None if self.counts is None else sum(self.counts)


def _index_for(urls: list[str]) -> tuple[list[int] | None, dict[str, int] | None]:
    """Counts of local shards from the index.json beside them (None if absent or not all listed)."""
    if not urls or any(u.startswith("pipe:") or "://" in u for u in urls):
        return None, None
    parent = Path(urls[0]).parent
    if not (parent / INDEX_NAME).is_file() or any(Path(u).parent != parent for u in urls):
        return None, None
    index = read_index(parent)
    by_name = {s["name"]: s["count"] for s in index["shards"]}
    names = [Path(u).name for u in urls]
    if any(n not in by_name for n in names):
        return None, None
    counts = [by_name[n] for n in names]
    sources = index.get("sources") if len(names) == len(by_name) else None
    return counts, sources


def _resolve_synth(spec: str) -> ResolvedData:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise DataSpecError(f"{spec!r}: expected synth:<layout>[:<per_class>], e.g. synth:bm-mll:20")
    if len(parts) == 3:
        try:
            per_class = int(parts[2])
        except ValueError:
            raise DataSpecError(f"{spec!r}: per_class must be an integer") from None
        root = ensure_cached(parts[1], per_class=per_class)
    else:
        root = ensure_cached(parts[1])
    return ResolvedData("catalog", spec, catalog=catalog_from_path(root))


def _resolve_shard_dir(spec: str, path: Path) -> ResolvedData:
    urls = [str(p) for p in shard_paths(path)]
    if (path / INDEX_NAME).is_file():
        index = read_index(path)
        counts = [s["count"] for s in index["shards"]]
        return ResolvedData("shards", spec, urls=urls, counts=counts, sources=index.get("sources"))
    return ResolvedData("shards", spec, urls=urls)


def resolve_data(data: str | os.PathLike) -> ResolvedData:
    """Resolve a ``data`` string (see the module docstring for the accepted forms).

    Raises:
        DataSpecError: the string matches no accepted form.
        MissingInputError: a local path does not exist (a ``FileNotFoundError``).
    """
    spec = str(data)
    if spec.startswith("synth:"):
        return _resolve_synth(spec)
    if spec.startswith("pipe:") or "://" in spec:
        return ResolvedData("shards", spec, urls=expand_urls(spec))
    if "{" in spec and ".." in spec:
        urls = expand_urls(spec)
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise MissingInputError(
                f"{spec}: {len(missing)} shard(s) of the pattern do not exist, e.g. {missing[0]}"
            )
        counts, sources = _index_for(urls)
        return ResolvedData("shards", spec, urls=urls, counts=counts, sources=sources)
    if any(c in spec for c in "*?["):
        urls = sorted(glob.glob(spec))
        if not urls:
            raise MissingInputError(f"{spec}: the pattern matches no file")
        counts, sources = _index_for(urls)
        return ResolvedData("shards", spec, urls=urls, counts=counts, sources=sources)
    path = Path(spec)
    if not path.exists():
        raise MissingInputError(f"{spec}: not found; data must be {DATA_FORMS}")
    if path.is_dir() and is_shard_dir(path):
        return _resolve_shard_dir(spec, path)
    if path.is_file() and path.suffix == ".tar":
        counts, sources = _index_for([spec])
        return ResolvedData("shards", spec, urls=[spec], counts=counts, sources=sources)
    if path.is_dir() or path.suffix == ".parquet":
        return ResolvedData("catalog", spec, catalog=catalog_from_path(path))
    raise DataSpecError(f"{spec}: not usable as data; data must be {DATA_FORMS}")
