"""Sources: reading the cells of a dataset folder as it was downloaded, without decoding any image.

:data:`SOURCES` is the registry: source kind -> ``"module:Class"`` of a :class:`CellSource`
subclass, torch-free; a source's module is imported when its kind is first opened or detected.

* ``aml-lmu`` - :class:`~ssl_cyto.data.sources.aml_lmu.AmlLmuSource` (Matek et al. 2019);
* ``bm-mll`` - :class:`~ssl_cyto.data.sources.bm_mll.BmMllSource` (Matek et al. 2021);
* ``folder`` - :class:`~ssl_cyto.data.sources.folder.FolderSource`, any ImageFolder tree; the
  fallback of :func:`detect_source`, and ``folder:NAME`` names it.

Adding a source is one file: a :class:`CellSource` subclass (``kind``, ``records()``, optionally
``detect()`` and ``takes_name``) and one line in :data:`SOURCES` below (or, from outside the
package, :func:`register_source`), plus its tests. ``ssl-cyto data scan KIND=PATH`` then reads it;
its labels map to no shared class (:func:`ssl_cyto.data.vocabulary.to_shared` gives ``None``) and
stay usable within the source.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssl_cyto.data.sources.base import (
    NOT_MINE,
    CellRecord,
    CellSource,
    SourceError,
    SourceNotFoundError,
)
from ssl_cyto.formats.imports import import_object

SOURCES: dict[str, str] = {
    "aml-lmu": "ssl_cyto.data.sources.aml_lmu:AmlLmuSource",
    "bm-mll": "ssl_cyto.data.sources.bm_mll:BmMllSource",
    "folder": "ssl_cyto.data.sources.folder:FolderSource",
}
FALLBACK_KIND = "folder"  # what detect_source answers when no source claims a folder

__all__ = [
    "FALLBACK_KIND",
    "SOURCES",
    "CellRecord",
    "CellSource",
    "SourceError",
    "SourceNotFoundError",
    "detect_source",
    "open_source",
    "parse_kind",
    "register_source",
    "source_class",
    "source_kinds",
]


def register_source(kind: str, target: str | type[CellSource], replace: bool = False) -> None:
    """Add a source to :data:`SOURCES`.

    Args:
        kind: the name used in ``KIND=PATH`` and as the catalog ``source`` (no ``:`` or ``=``).
        target: ``"module:Class"`` or the class itself (its ``kind`` attribute should equal ``kind``).
        replace: allow replacing an existing kind.

    Raises:
        SourceError: a bad kind, or one already registered (without ``replace``).
    """
    if not kind or any(ch in kind for ch in ":=/") or kind != kind.strip():
        raise SourceError(f"source kind {kind!r}: use a plain name such as 'my-source' (no ':', '=' or '/')")
    if kind in SOURCES and not replace:
        raise SourceError(f"source kind {kind!r} is already registered ({SOURCES[kind]}); pass replace=True")
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    if ":" not in target:
        raise SourceError(f"{target!r}: expected 'module:Class'")
    SOURCES[kind] = target


def source_kinds() -> list[str]:
    """The registered source kinds, in registry order."""
    return list(SOURCES)


def _kinds_text() -> str:
    words = source_kinds() + [f"{k}:NAME" for k in SOURCES if source_class(k).takes_name]
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]


def source_class(kind: str) -> type[CellSource]:
    """The :class:`CellSource` subclass registered as ``kind`` (imported on first use).

    Raises:
        SourceError: ``kind`` is not registered.
    """
    if kind not in SOURCES:
        raise SourceError(f"unknown source kind {kind!r}: use {_kinds_text()}")
    obj = import_object(SOURCES[kind])
    if not (isinstance(obj, type) and issubclass(obj, CellSource)):
        raise SourceError(f"source {kind!r}: {SOURCES[kind]} is not a CellSource subclass")
    return obj


def parse_kind(kind: str) -> tuple[str, str | None]:
    """Split ``folder:NAME`` into ("folder", "NAME"); other kinds have no name.

    Raises:
        SourceError: an unknown kind, or a name given to a source that takes none.
    """
    base, _, name = kind.partition(":")
    cls = source_class(base)
    if name and not cls.takes_name:
        named = [k for k in SOURCES if source_class(k).takes_name]
        raise SourceError(f"{kind!r}: only {', '.join(named) or 'no'} sources take a name (KIND:NAME)")
    return base, name or None


def detect_source(root: str | os.PathLike) -> str:
    """Guess the kind of a dataset folder: the source whose ``detect`` is surest, else ``folder``.

    Ties go to the source registered first.

    Raises:
        SourceNotFoundError: the folder does not exist.
    """
    p = Path(root).expanduser()
    if not p.is_dir():
        raise SourceNotFoundError(f"{p}: no such folder")
    p = p.resolve()
    best, best_score = FALLBACK_KIND, NOT_MINE
    for kind in SOURCES:
        score = source_class(kind).detect(p)
        if score > best_score:
            best, best_score = kind, score
    return best


def open_source(kind: str, root: str | os.PathLike, verify: bool = True) -> CellSource:
    """Open a source by kind (``aml-lmu``, ``bm-mll``, ``folder``, ``folder:NAME`` or a registered one)."""
    base, name = parse_kind(kind)
    return source_class(base)(root, name=name, verify=verify)
