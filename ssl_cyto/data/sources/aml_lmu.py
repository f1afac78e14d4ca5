"""AML-Cytomorphology_LMU (Matek et al. 2019, *Nature Machine Intelligence* 1:538).

``PATH/AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff`` plus ``annotations.dat`` (one line per cell:
``path gold reannot1 reannot2``; ``nan`` = not re-annotated, ``UNC`` = unassignable; parsed by
:mod:`ssl_cyto.formats.annotations`). Labels come from ``annotations.dat``, never from folder names.

``PATH`` is the top folder as downloaded; the inner image folder is accepted too. Either way the
record's ``root`` is the top folder and ``path`` starts with the inner folder's name, so a cell's
``cell_id`` (``f"aml-lmu/{path}"``) does not depend on which of the two was given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ssl_cyto.data.sources.base import (
    LIKELY,
    NOT_MINE,
    SIDE_FILES,
    SURE,
    CellRecord,
    CellSource,
    SourceNotFoundError,
    inner_folder,
    near,
    walk_files,
)
from ssl_cyto.formats.annotations import ANNOTATIONS_NAME, annotation_lines, find_annotations
from ssl_cyto.formats.errors import MissingInputError

AML_LMU_UM_PER_PX = 1 / 14.14  # 100x oil objective, Matek et al. 2019
AML_INNER = "AML-Cytomorphology"

Labels = tuple[str | None, str | None, str | None]


class AmlLmuSource(CellSource):
    """AML-Cytomorphology_LMU (Matek et al. 2019): RGBA TIFFs, labels from ``annotations.dat``.

    Args:
        root: the dataset's top folder (holding ``AML-Cytomorphology/`` and ``annotations.dat``) or the
            inner ``AML-Cytomorphology`` folder (``annotations.dat`` beside or inside it).
        name, verify: accepted for a uniform signature; unused.
    """

    kind = "aml-lmu"
    licence = "CC BY 3.0"  # TCIA: AML-Cytomorphology_LMU

    def __init__(self, root: str | os.PathLike, name: str | None = None, verify: bool = True) -> None:
        super().__init__(root, name=name, verify=verify)
        self.root, self.inner = inner_folder(self.given, AML_INNER)
        try:
            self.annotations = find_annotations(self.root, inner=self.inner, beside=False)
        except MissingInputError:
            raise SourceNotFoundError(
                f"{ANNOTATIONS_NAME} not found in {self.root} or {self.root / self.inner}; AML-LMU labels come "
                "from it: put it beside the AML-Cytomorphology folder as in the download"
            ) from None

    @classmethod
    def detect(cls, root: Path) -> int:
        """SURE with an ``AML-Cytomorphology`` folder, LIKELY with ``annotations.dat`` in or beside it."""
        if (root / AML_INNER).is_dir() or root.name == AML_INNER:
            return SURE
        return LIKELY if near(root, ANNOTATIONS_NAME) else NOT_MINE

    def read_annotations(self) -> dict[str, Labels]:
        """``annotations.dat`` as {path relative to the inner folder: (gold, reannot1, reannot2)}.

        A path listed twice is reported in :attr:`problems` (the first line is kept).

        Raises:
            AnnotationsError: a malformed line (the message gives ``file:line``).
        """
        out: dict[str, Labels] = {}
        prefix = self.inner + "/"
        for lineno, (file, gold, r1, r2) in annotation_lines(self.annotations):
            path = file.removeprefix(prefix)
            if path in out:
                self.problems.append(f"{self.annotations.name}:{lineno}: {path} listed twice (first kept)")
                continue
            out[path] = (gold, r1, r2)
        return out

    def records(self) -> Iterator[CellRecord]:
        """Yield every image (sorted); unlisted images get label None and are reported."""
        self.problems = []
        ann = self.read_annotations()
        seen: set[str] = set()
        for rel, is_img in walk_files(self.root / self.inner, self.problems):
            if not is_img:
                if rel not in SIDE_FILES:
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
