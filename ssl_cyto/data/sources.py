"""Reading the cells of a dataset folder as it was downloaded, without decoding any image.

Three kinds of source:

* :class:`AmlLmuSource` - AML-Cytomorphology_LMU (Matek et al. 2019, *Nature Machine Intelligence*
  1:538). ``PATH/AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff`` plus ``annotations.dat`` (one line per cell:
  ``path gold reannot1 reannot2``; ``nan`` = not re-annotated, ``UNC`` = unassignable). Labels come from
  ``annotations.dat``, never from folder names.
* :class:`BmMllSource` - Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer (Matek et al. 2021,
  *Blood* 138:1917). ``PATH/BM_cytomorphology_data/<CLS>/[<range>/]<CLS>_NNNNN.jpg``; the label is the
  class folder.
* :class:`FolderSource` - any ImageFolder tree ``<class>/<file>`` with an optional ``manifest.csv``
  (``path,label,sha256``) that is verified when present.

``PATH`` is the top folder as downloaded; the inner image folder is accepted too. Either way the
record's ``root`` is the top folder and ``path`` starts with the inner folder's name, so a cell's
``cell_id`` (``f"{source}/{path}"``) does not depend on which of the two was given.

Problems (an image missing from ``annotations.dat``, a listed file that is missing, a file whose
SHA-256 differs from the manifest...) never stop a scan and are never dropped silently: each is one
line naming the file in ``source.problems`` (filled during iteration).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ssl_cyto.data.images import IMAGE_EXTENSIONS

AML_LMU_UM_PER_PX = 1 / 14.14  # 100x oil objective, Matek et al. 2019
AML_INNER = "AML-Cytomorphology"
BM_INNER = "BM_cytomorphology_data"
SOURCE_KINDS = ("aml-lmu", "bm-mll", "folder")
_SIDE_FILES = {"annotations.dat", "abbreviations.txt", "abbreviations.csv", "manifest.csv"}
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")
_CLASS_RE = re.compile(r"^[A-Z]{3}$")


class SourceError(ValueError):
    """A dataset folder that cannot be read as the requested kind of source."""


class SourceNotFoundError(FileNotFoundError):
    """A dataset folder (or a file it needs) that does not exist."""


@dataclass
class CellRecord:
    """One cell of a source (one row of the catalog).

    Attributes:
        cell_id: ``f"{source}/{path}"``, stable across scans and machines.
        source: ``aml-lmu``, ``bm-mll`` or ``folder:<name>``.
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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_files(folder: str) -> Iterator[tuple[str, bool]]:
    """Yield (path relative to ``folder`` with '/', is_image) for every non-hidden file, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        here = os.path.join(folder, rel) if rel else folder
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=True):
                subdirs.append(r)
            else:
                yield r, _is_image(e.name)
        stack.extend(reversed(subdirs))


class CellSource:
    """Base class: a folder of cells. Subclasses implement :meth:`records`."""

    kind = "base"

    def __init__(self, root: str | Path) -> None:
        self.given = Path(root).expanduser()
        if not self.given.exists():
            raise SourceNotFoundError(f"{self.given}: no such folder; give the dataset folder as downloaded")
        if not self.given.is_dir():
            raise SourceError(f"{self.given}: not a folder; give the dataset folder as downloaded")
        self.problems: list[str] = []
        self.name = self.kind

    def records(self) -> Iterator[CellRecord]:
        """Yield the cells, sorted by path; fills :attr:`problems`."""
        raise NotImplementedError

    def _record(self, root: Path, path: str, label: str | None, **kw) -> CellRecord:
        return CellRecord(
            cell_id=f"{self.name}/{path}", source=self.name, path=path, root=str(root), label=label, **kw
        )


def _inner_folder(given: Path, inner_name: str) -> tuple[Path, str]:
    """(top root, inner folder name) for a PATH that is the top folder or the inner folder."""
    given = given.resolve()
    if (given / inner_name).is_dir():
        return given, inner_name
    if given.name == inner_name:
        return given.parent, inner_name
    # an inner folder with another name: it holds class folders directly
    if any(_CLASS_RE.match(p.name) for p in given.iterdir() if p.is_dir()):
        return given.parent, given.name
    raise SourceError(
        f"{given}: neither {inner_name}/ nor class folders (e.g. NGS/) found; give the dataset folder as downloaded"
    )


def _find_side_file(root: Path, inner: str, names: tuple[str, ...]) -> Path | None:
    for folder in (root, root / inner):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _nan(value: str) -> str | None:
    return None if value.lower() in ("nan", "none", "") else value


class AmlLmuSource(CellSource):
    """AML-Cytomorphology_LMU (Matek et al. 2019): RGBA TIFFs, labels from ``annotations.dat``.

    Args:
        root: the dataset's top folder (holding ``AML-Cytomorphology/`` and ``annotations.dat``) or the
            inner ``AML-Cytomorphology`` folder (``annotations.dat`` beside or inside it).
    """

    kind = "aml-lmu"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.root, self.inner = _inner_folder(self.given, AML_INNER)
        ann = _find_side_file(self.root, self.inner, ("annotations.dat",))
        if ann is None:
            raise SourceNotFoundError(
                f"annotations.dat not found in {self.root} or {self.root / self.inner}; AML-LMU labels come "
                "from it: put it beside the AML-Cytomorphology folder as in the download"
            )
        self.annotations = ann

    def read_annotations(self) -> dict[str, tuple[str | None, str | None, str | None]]:
        """``annotations.dat`` as {path relative to the inner folder: (gold, reannot1, reannot2)}.

        Malformed lines are reported in :attr:`problems` (with their line number) and skipped.
        """
        out: dict[str, tuple[str | None, str | None, str | None]] = {}
        prefix = self.inner + "/"
        with open(self.annotations, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 2 or len(parts) > 4:
                    self.problems.append(f"{self.annotations.name}:{lineno}: malformed line {line.strip()!r}")
                    continue
                path = parts[0].replace("\\", "/").removeprefix("./")
                if path.startswith(prefix):
                    path = path[len(prefix) :]
                cols = [_nan(p) for p in parts[1:]] + [None] * (4 - len(parts))
                if path in out:
                    self.problems.append(
                        f"{self.annotations.name}:{lineno}: {path} listed twice (first kept)"
                    )
                    continue
                out[path] = (cols[0], cols[1], cols[2])
        return out

    def records(self) -> Iterator[CellRecord]:
        """Yield every image (sorted); unlisted images get label None and are reported."""
        self.problems = []
        ann = self.read_annotations()
        seen: set[str] = set()
        inner_dir = self.root / self.inner
        for rel, is_img in _walk_files(str(inner_dir)):
            if not is_img:
                if rel not in _SIDE_FILES:
                    self.problems.append(f"not an image, skipped: {self.inner}/{rel}")
                continue
            path = f"{self.inner}/{rel}"
            entry = ann.get(rel)
            if entry is None:
                self.problems.append(f"not in annotations.dat (label None): {path}")
                gold = r1 = r2 = None
            else:
                seen.add(rel)
                gold, r1, r2 = entry
            yield self._record(self.root, path, gold, reannot1=r1, reannot2=r2, um_per_px=AML_LMU_UM_PER_PX)
        for rel in sorted(set(ann) - seen):
            self.problems.append(f"listed in annotations.dat but missing: {self.inner}/{rel}")


class BmMllSource(CellSource):
    """Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer (Matek et al. 2021): labels = class folders.

    Classes with more than 1000 cells are split into range folders (``NGB/9001-9968/NGB_09454.jpg``);
    the walk descends into any sub-folder. A file whose number lies outside its range folder is
    reported (it was probably moved by hand).

    Args:
        root: the top folder (holding ``BM_cytomorphology_data/``) or ``BM_cytomorphology_data`` itself.
    """

    kind = "bm-mll"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.root, self.inner = _inner_folder(self.given, BM_INNER)
        self.abbreviations = _find_side_file(self.root, self.inner, ("abbreviations.csv",))

    def records(self) -> Iterator[CellRecord]:
        """Yield every image (sorted by path)."""
        self.problems = []
        inner_dir = self.root / self.inner
        for rel, is_img in _walk_files(str(inner_dir)):
            parts = rel.split("/")
            if not is_img:
                if rel not in _SIDE_FILES:
                    self.problems.append(f"not an image, skipped: {self.inner}/{rel}")
                continue
            path = f"{self.inner}/{rel}"
            if len(parts) < 2:
                self.problems.append(f"image outside a class folder (label None): {path}")
                label = None
            else:
                label = parts[0]
                if len(parts) == 3:
                    self._check_range(path, parts[1], parts[2])
                elif len(parts) > 3:
                    self.problems.append(f"unexpected nesting (label {label} from the class folder): {path}")
            yield self._record(self.root, path, label)

    def _check_range(self, path: str, folder: str, name: str) -> None:
        m = _RANGE_RE.match(folder)
        num = re.search(r"_(\d+)\.[^.]+$", name)
        if m is None:
            self.problems.append(f"sub-folder is not a range like 0001-1000: {path}")
        elif num is not None and not int(m.group(1)) <= int(num.group(1)) <= int(m.group(2)):
            self.problems.append(f"file number outside its range folder {folder}: {path}")


class FolderSource(CellSource):
    """A generic ImageFolder tree ``<class>/<file>``; labels are the first-level folder names.

    When ``manifest.csv`` (``path,label,sha256``) is present, every listed file is checked: a missing
    file, a changed file (SHA-256 differs; skipped with ``verify=False``), a file not listed, or a
    label that differs from the folder is reported by name in :attr:`problems`.

    Args:
        root: the folder.
        name: the source name (``folder:<name>``); default: the folder's basename.
        verify: hash files listed in the manifest and compare.
    """

    kind = "folder"

    def __init__(self, root: str | Path, name: str | None = None, verify: bool = True) -> None:
        super().__init__(root)
        self.root = self.given.resolve()
        self.name = f"folder:{name or self.root.name}"
        self.verify = verify
        self.manifest = self.root / "manifest.csv" if (self.root / "manifest.csv").is_file() else None

    def read_manifest(self) -> dict[str, tuple[str | None, str | None]]:
        """``manifest.csv`` as {path: (label, sha256)} (empty without a manifest)."""
        if self.manifest is None:
            return {}
        out: dict[str, tuple[str | None, str | None]] = {}
        with open(self.manifest, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise SourceError(f"{self.manifest}: needs a header with a 'path' column (path,label,sha256)")
            for row in reader:
                path = (row.get("path") or "").replace("\\", "/")
                out[path] = (row.get("label") or None, (row.get("sha256") or "").lower() or None)
        return out

    def records(self) -> Iterator[CellRecord]:
        """Yield every image (sorted by path), verifying the manifest when there is one."""
        self.problems = []
        manifest = self.read_manifest()
        seen: set[str] = set()
        for rel, is_img in _walk_files(str(self.root)):
            if not is_img:
                continue
            parts = rel.split("/")
            label = parts[0] if len(parts) > 1 else None
            if label is None:
                self.problems.append(f"image outside a class folder (label None): {rel}")
            digest = None
            if self.manifest is not None:
                entry = manifest.get(rel)
                if entry is None:
                    self.problems.append(f"not in manifest.csv: {rel}")
                else:
                    seen.add(rel)
                    m_label, m_sha = entry
                    if m_label is not None and label is not None and m_label != label:
                        self.problems.append(
                            f"manifest label {m_label!r} differs from folder {label!r}: {rel}"
                        )
                    if self.verify:
                        digest = sha256_file(self.root / rel)
                        if m_sha is not None and digest != m_sha:
                            self.problems.append(f"changed (sha256 differs from manifest.csv): {rel}")
            yield self._record(self.root, rel, label, sha256=digest)
        for rel in sorted(set(manifest) - seen):
            self.problems.append(f"listed in manifest.csv but missing: {rel}")


def detect_source(root: str | Path) -> str:
    """Guess the kind of a dataset folder: ``aml-lmu``, ``bm-mll`` or ``folder``.

    Raises:
        SourceNotFoundError: the folder does not exist.
    """
    p = Path(root).expanduser()
    if not p.is_dir():
        raise SourceNotFoundError(f"{p}: no such folder")
    p = p.resolve()
    if (p / AML_INNER).is_dir() or p.name == AML_INNER:
        return "aml-lmu"
    if (p / BM_INNER).is_dir() or p.name == BM_INNER:
        return "bm-mll"
    if (p / "annotations.dat").is_file() or (p.parent / "annotations.dat").is_file():
        return "aml-lmu"
    if (p / "abbreviations.csv").is_file() or (p.parent / "abbreviations.csv").is_file():
        return "bm-mll"
    return "folder"


def parse_kind(kind: str) -> tuple[str, str | None]:
    """Split ``folder:NAME`` into ("folder", "NAME"); other kinds have no name."""
    base, _, name = kind.partition(":")
    if base not in SOURCE_KINDS:
        raise SourceError(f"unknown source kind {kind!r}: use aml-lmu, bm-mll, folder or folder:NAME")
    if name and base != "folder":
        raise SourceError(f"{kind!r}: only folder sources take a name (folder:NAME)")
    return base, name or None


def open_source(kind: str, root: str | Path, verify: bool = True) -> CellSource:
    """Open a source by kind (``aml-lmu``, ``bm-mll``, ``folder`` or ``folder:NAME``)."""
    base, name = parse_kind(kind)
    if base == "aml-lmu":
        return AmlLmuSource(root)
    if base == "bm-mll":
        return BmMllSource(root)
    return FolderSource(root, name=name, verify=verify)
