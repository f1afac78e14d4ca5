"""Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer (Matek et al. 2021, *Blood* 138:1917).

``PATH/BM_cytomorphology_data/<CLS>/[<range>/]<CLS>_NNNNN.jpg``; the label is the class folder.
``PATH`` is the top folder as downloaded or the inner folder; the ``cell_id`` is the same either way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ssl_cyto.data.sources.base import (
    LIKELY,
    NOT_MINE,
    SIDE_FILES,
    SURE,
    CellRecord,
    CellSource,
    find_side_file,
    inner_folder,
    near,
    walk_files,
)

BM_INNER = "BM_cytomorphology_data"
ABBREVIATIONS_NAME = "abbreviations.csv"
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")
_NUMBER_RE = re.compile(r"_(\d+)\.[^.]+$")


class BmMllSource(CellSource):
    """Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer (Matek et al. 2021): labels = class folders.

    Classes with more than 1000 cells are split into range folders (``NGB/9001-9968/NGB_09454.jpg``);
    the walk descends into any sub-folder. A file whose number lies outside its range folder is
    reported (it was probably moved by hand).

    Args:
        root: the top folder (holding ``BM_cytomorphology_data/``) or ``BM_cytomorphology_data`` itself.
        name, verify: accepted for a uniform signature; unused.
    """

    kind = "bm-mll"
    licence = "CC BY 4.0"  # TCIA: Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer

    def __init__(self, root: str | os.PathLike, name: str | None = None, verify: bool = True) -> None:
        super().__init__(root, name=name, verify=verify)
        self.root, self.inner = inner_folder(self.given, BM_INNER)
        self.abbreviations = find_side_file(self.root, self.inner, (ABBREVIATIONS_NAME,))

    @classmethod
    def detect(cls, root: Path) -> int:
        """SURE with a ``BM_cytomorphology_data`` folder, LIKELY with ``abbreviations.csv`` in or beside it."""
        if (root / BM_INNER).is_dir() or root.name == BM_INNER:
            return SURE
        return LIKELY if near(root, ABBREVIATIONS_NAME) else NOT_MINE

    def records(self) -> Iterator[CellRecord]:
        """Yield every image (sorted by path)."""
        self.problems = []
        for rel, is_img in walk_files(self.root / self.inner, self.problems):
            parts = rel.split("/")
            if not is_img:
                if rel not in SIDE_FILES:
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
        num = _NUMBER_RE.search(name)
        if m is None:
            self.problems.append(f"sub-folder is not a range like 0001-1000: {path}")
        elif num is not None and not int(m.group(1)) <= int(num.group(1)) <= int(m.group(2)):
            self.problems.append(f"file number outside its range folder {folder}: {path}")
