"""A generic ImageFolder tree ``<class>/<file>`` with an optional ``manifest.csv`` (``path,label,sha256``).

The fallback of :func:`~ssl_cyto.data.sources.detect_source`: any folder no other source claims.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

from ssl_cyto.data.sources.base import CellRecord, CellSource, SourceError, walk_files
from ssl_cyto.formats.hashing import sha256_file

MANIFEST_NAME = "manifest.csv"

Manifest = dict[str, tuple[str | None, str | None]]


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
    takes_name = True

    def __init__(self, root: str | os.PathLike, name: str | None = None, verify: bool = True) -> None:
        super().__init__(root, name=name, verify=verify)
        self.root = self.given.resolve()
        self.name = f"folder:{name or self.root.name}"
        self.manifest = self.root / MANIFEST_NAME if (self.root / MANIFEST_NAME).is_file() else None

    def read_manifest(self) -> Manifest:
        """``manifest.csv`` as {path: (label, sha256)} (empty without a manifest).

        Raises:
            SourceError: the manifest has no ``path`` column.
        """
        if self.manifest is None:
            return {}
        out: Manifest = {}
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
        for rel, is_img in walk_files(self.root, self.problems):
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
