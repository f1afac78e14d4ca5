"""annotations.dat: the one parser and its one error rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_cyto.formats.annotations import (
    UNASSIGNABLE,
    AnnotationsError,
    annotation_lines,
    find_annotations,
    read_annotations,
)
from ssl_cyto.formats.errors import InputError, MissingInputError


def test_rows_nan_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "annotations.dat"
    path.write_text(
        "AML-Cytomorphology/NGS/NGS_0001.tiff NGS NGS UNC\n"
        "\n"
        ".\\NGS\\NGS_0002.tiff NGB nan NaN\n"
        "LYT/LYT_0001.tiff LYT\n"
    )
    assert read_annotations(path) == [
        ("AML-Cytomorphology/NGS/NGS_0001.tiff", "NGS", "NGS", UNASSIGNABLE),
        ("NGS/NGS_0002.tiff", "NGB", None, None),
        ("LYT/LYT_0001.tiff", "LYT", None, None),
    ]
    assert [n for n, _ in annotation_lines(path)] == [1, 3, 4]


@pytest.mark.parametrize("line", ["only-a-path", "a.tiff A B C D"])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "annotations.dat"
    path.write_text(f"ok.tiff A\n{line}\n")
    with pytest.raises(AnnotationsError, match=r"annotations.dat:2: expected") as info:
        read_annotations(path)
    assert isinstance(info.value, InputError)


def test_find_annotations(tmp_path: Path) -> None:
    top = tmp_path / "AML-Cytomorphology_LMU"
    inner = top / "AML-Cytomorphology"
    inner.mkdir(parents=True)
    with pytest.raises(MissingInputError, match="no annotations.dat"):
        find_annotations(top)
    (inner / "annotations.dat").write_text("a.tiff A\n")
    assert find_annotations(top, inner="AML-Cytomorphology") == inner / "annotations.dat"
    assert find_annotations(inner) == inner / "annotations.dat"
    (top / "annotations.dat").write_text("a.tiff A\n")
    assert find_annotations(inner) == inner / "annotations.dat"  # inside wins over beside
    assert find_annotations(top) == top / "annotations.dat"
    assert find_annotations(top / "annotations.dat") == top / "annotations.dat"
    with pytest.raises(MissingInputError):
        read_annotations(tmp_path / "nope.dat")
