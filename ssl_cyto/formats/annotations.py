"""AML-Cytomorphology_LMU's ``annotations.dat``: the one parser.

One line per cell, whitespace-separated: ``path gold [reannot1 [reannot2]]`` (Matek et al. 2019,
*Nature Machine Intelligence* 1:538). ``nan`` (or ``none``) marks a cell that was not re-annotated;
:data:`UNASSIGNABLE` (``UNC``) is a rater's "could not assign a class".

The rule, for every reader (the AML-LMU source and the rater agreement): blank lines are skipped;
a line with fewer than 2 or more than 4 fields is an :class:`AnnotationsError` naming the file and
the line number. Paths are returned with ``/`` separators and without a leading ``./``; whether they
start with the inner ``AML-Cytomorphology/`` folder is left to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ssl_cyto.formats.errors import InputError, MissingInputError

ANNOTATIONS_NAME = "annotations.dat"
UNASSIGNABLE = "UNC"  # AML-LMU re-annotation code: the examiner could not assign a class
MISSING_VALUES = ("nan", "none")  # case-insensitive: "no label in this column"

AnnotationRow = tuple[str, str | None, str | None, str | None]


class AnnotationsError(InputError):
    """A malformed line in ``annotations.dat`` (the message gives ``file:line``)."""


def find_annotations(path: str | os.PathLike, inner: str | None = None, beside: bool = True) -> Path:
    """The ``annotations.dat`` of a dataset folder, or ``path`` itself if it is a file.

    Looks in ``path``, then ``path/inner`` (when ``inner`` is given), then beside ``path`` (its
    parent folder, when ``beside``).

    Raises:
        MissingInputError: none of these holds the file.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    candidates = [p / ANNOTATIONS_NAME]
    if inner:
        candidates.append(p / inner / ANNOTATIONS_NAME)
    if beside:
        candidates.append(p.parent / ANNOTATIONS_NAME)
    for cand in candidates:
        if cand.is_file():
            return cand
    where = ", ".join(str(c.parent) for c in candidates)
    raise MissingInputError(
        f"{p}: no {ANNOTATIONS_NAME} there (looked in {where}); give the AML-Cytomorphology_LMU folder "
        "as downloaded, or the file itself"
    )


def _value(field: str) -> str | None:
    return None if field.lower() in MISSING_VALUES else field


def annotation_lines(path: str | os.PathLike) -> Iterator[tuple[int, AnnotationRow]]:
    """Yield ``(line number, (path, gold, reannot1, reannot2))`` for each line of an ``annotations.dat``.

    Missing columns and ``nan`` values are ``None``.

    Raises:
        MissingInputError: the file does not exist.
        AnnotationsError: a line has fewer than 2 or more than 4 fields.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"{p}: no such file; give the {ANNOTATIONS_NAME} of AML-Cytomorphology_LMU")
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if not 2 <= len(parts) <= 4:
                raise AnnotationsError(
                    f"{p}:{lineno}: expected 'path gold [reannot1 [reannot2]]', got {line.strip()!r}; "
                    "fix or remove the line"
                )
            file = parts[0].replace("\\", "/").removeprefix("./")
            cols = [_value(x) for x in parts[1:]] + [None] * (4 - len(parts))
            yield lineno, (file, cols[0], cols[1], cols[2])


def read_annotations(path: str | os.PathLike) -> list[AnnotationRow]:
    """Rows ``(path, gold, reannot1, reannot2)`` of an ``annotations.dat``, in file order.

    The same rule as :func:`annotation_lines`, which it reads.
    """
    return [row for _, row in annotation_lines(path)]
