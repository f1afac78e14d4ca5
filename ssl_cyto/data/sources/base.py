"""What every source shares: :class:`CellRecord` (one catalog row), :class:`CellSource`, folder walking.

A source reads the cells of a dataset folder as it was downloaded, without decoding any image.
Problems (an image missing from the labels, a listed file that is missing, a file whose SHA-256
differs...) never stop a scan and are never dropped silently: each is one line naming the file in
``source.problems`` (filled during iteration).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ssl_cyto.data.images import IMAGE_EXTENSIONS
from ssl_cyto.formats.errors import InputError, MissingInputError

SIDE_FILES = {"annotations.dat", "abbreviations.txt", "abbreviations.csv", "manifest.csv"}
CLASS_FOLDER_RE = re.compile(r"^[A-Z]{3}$")  # the class folders of the Matek datasets (NGS, BLA, ...)

# Scores of CellSource.detect: how sure a source is that a folder is its own.
NOT_MINE = 0
LIKELY = 1  # a side file of the dataset (annotations.dat, abbreviations.csv) is there
SURE = 2  # the dataset's own inner folder is there


class SourceError(InputError):
    """A dataset folder that cannot be read as the requested kind of source."""


class SourceNotFoundError(MissingInputError):
    """A dataset folder (or a file it needs) that does not exist."""


@dataclass
class CellRecord:
    """One cell of a source (one row of the catalog).

    Attributes:
        cell_id: ``f"{source}/{path}"``, stable across scans and machines.
        source: the source's name (``aml-lmu``, ``bm-mll``, ``folder:<name>``, ...).
        path: image path relative to ``root`` (POSIX).
        root: the source's top folder (absolute).
        label: gold expert label, ``None`` if the cell has none.
        reannot1: first re-annotation (AML-LMU), ``None`` if none.
        reannot2: second re-annotation (AML-LMU), ``None`` if none.
        um_per_px: micrometres per pixel, ``None`` if unknown.
        sha256: SHA-256 of the file, where computed.
    """

    cell_id: str
    source: str
    path: str
    root: str
    label: str | None
    reannot1: str | None = None
    reannot2: str | None = None
    um_per_px: float | None = None
    sha256: str | None = None

    def as_dict(self) -> dict:
        """The record as a plain dict (catalog row)."""
        return asdict(self)


class CellSource:
    """Base class of a source: a folder of cells. Subclasses set :attr:`kind` and implement :meth:`records`.

    Every source is opened as ``Source(root, name=None, verify=True)`` (see
    :func:`ssl_cyto.data.sources.open_source`).

    Attributes:
        kind: the registry name (``aml-lmu``); also the catalog ``source`` unless a name is given.
        takes_name: whether ``KIND:NAME`` is accepted (the source is then called ``KIND:NAME``).
        given: the folder as given; problems: the problem lines of the last :meth:`records` run.

    Args:
        root: the dataset folder.
        name: ``NAME`` of ``KIND:NAME`` (only for sources with ``takes_name``).
        verify: check the files against a checksum list where the source has one.
    """

    kind = "base"
    takes_name = False
    #: The licence of the source's images (said in model cards of exports; "unknown" for a folder of your own).
    licence = "unknown"

    def __init__(self, root: str | os.PathLike, name: str | None = None, verify: bool = True) -> None:
        self.given = Path(root).expanduser()
        if not self.given.exists():
            raise SourceNotFoundError(f"{self.given}: no such folder; give the dataset folder as downloaded")
        if not self.given.is_dir():
            raise SourceError(f"{self.given}: not a folder; give the dataset folder as downloaded")
        if name and not self.takes_name:
            raise SourceError(f"{self.kind}:{name}: only some sources take a name; use {self.kind}")
        self.problems: list[str] = []
        self.name = f"{self.kind}:{name}" if name else self.kind
        self.verify = verify

    @classmethod
    def detect(cls, root: Path) -> int:
        """How sure this source is that the existing folder ``root`` is its own (:data:`NOT_MINE`,
        :data:`LIKELY` or :data:`SURE`); :func:`~ssl_cyto.data.sources.detect_source` picks the highest."""
        return NOT_MINE

    def records(self) -> Iterator[CellRecord]:
        """Yield the cells, sorted by path; fills :attr:`problems`."""
        raise NotImplementedError

    def _record(self, root: Path, path: str, label: str | None, **kw) -> CellRecord:
        return CellRecord(
            cell_id=f"{self.name}/{path}", source=self.name, path=path, root=str(root), label=label, **kw
        )


def is_image(name: str) -> bool:
    """Whether a file name has an image extension the project reads."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def walk_files(folder: str | os.PathLike, problems: list[str] | None = None) -> Iterator[tuple[str, bool]]:
    """Yield (path relative to ``folder`` with '/', is_image) for every non-hidden file, sorted.

    Hand-written rather than ``os.walk`` so the order is the same on every file system (sorted by
    name, depth first). Symlinks are followed, and each real directory is visited once (by device
    and inode): a symlink loop, or a second link to a folder already walked, is passed over with a
    problem line, never a crash. Broken symlinks and unreadable folders are problem lines too.

    Args:
        folder: the folder to walk.
        problems: where the problem lines go (None: not recorded).
    """
    seen: set[tuple[int, int]] = set()
    report = problems.append if problems is not None else (lambda line: None)
    stack = [""]
    while stack:
        rel = stack.pop()
        here = os.path.join(folder, rel) if rel else os.fspath(folder)
        try:
            st = os.stat(here)
            if (st.st_dev, st.st_ino) in seen:
                report(f"folder reached twice (symlink to {os.path.realpath(here)}), walked once: {rel}")
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(f"cannot read folder ({exc.strerror or exc}): {rel or here}")
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir(follow_symlinks=True)
                if not is_dir and e.is_symlink() and not os.path.exists(e.path):
                    report(f"broken symlink, skipped: {r}")
                    continue
            except OSError as exc:  # e.g. ELOOP on a link to itself
                report(f"unreadable symlink ({exc.strerror or exc}), skipped: {r}")
                continue
            if is_dir:
                subdirs.append(r)
            else:
                yield r, is_image(e.name)
        stack.extend(reversed(subdirs))


def inner_folder(given: Path, inner_name: str) -> tuple[Path, str]:
    """(top root, inner folder name) for a PATH that is the top folder or the inner image folder.

    Raises:
        SourceError: neither the inner folder nor class folders are there.
    """
    given = given.resolve()
    if (given / inner_name).is_dir():
        return given, inner_name
    if given.name == inner_name:
        return given.parent, inner_name
    # an inner folder with another name: it holds class folders directly
    if any(CLASS_FOLDER_RE.match(p.name) for p in given.iterdir() if p.is_dir()):
        return given.parent, given.name
    raise SourceError(
        f"{given}: neither {inner_name}/ nor class folders (e.g. NGS/) found; give the dataset folder as downloaded"
    )


def find_side_file(root: Path, inner: str, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` found in ``root`` or ``root/inner``, else None."""
    for folder in (root, root / inner):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def near(root: Path, name: str) -> bool:
    """Whether file ``name`` lies in ``root`` or beside it (in its parent)."""
    return (root / name).is_file() or (root.parent / name).is_file()
