"""Vocabularies, the shared mapping and the rule for classes too small to score."""

from __future__ import annotations

import pytest

from ssl_cyto.data.vocabulary import (
    AML_LMU_CLASSES,
    AML_LMU_COUNTS,
    AML_LMU_TO_SHARED,
    BM_MLL_CLASSES,
    BM_MLL_KNOWN_COUNTS,
    BM_MLL_TO_SHARED,
    MIN_CELLS_TO_SCORE,
    SHARED_CLASSES,
    harmonise,
    scorable_classes,
    to_shared,
)

PBC = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]


def test_class_lists() -> None:
    assert len(AML_LMU_CLASSES) == 15 and len(BM_MLL_CLASSES) == 21
    assert sum(AML_LMU_COUNTS.values()) == 18365
    assert set(AML_LMU_COUNTS) == set(AML_LMU_CLASSES) == set(AML_LMU_TO_SHARED)
    assert set(BM_MLL_KNOWN_COUNTS) <= set(BM_MLL_CLASSES) == set(BM_MLL_TO_SHARED)


def test_shared_mapping() -> None:
    for table in (AML_LMU_TO_SHARED, BM_MLL_TO_SHARED):
        assert {v for v in table.values() if v is not None} <= set(SHARED_CLASSES)
    for name in PBC:
        assert to_shared("folder:pbc_subset", name) == name
    assert to_shared("folder:x", "Neutrophil") == "neutrophil"
    assert (
        to_shared("aml-lmu", "NGB")
        == to_shared("aml-lmu", "NGS")
        == to_shared("bm-mll", "NGS")
        == "neutrophil"
    )
    assert to_shared("aml-lmu", "MYO") == to_shared("bm-mll", "BLA") == "blast"
    assert {to_shared("bm-mll", c) for c in ("MYB", "MMZ", "PMO")} == {"ig"}
    assert to_shared("bm-mll", "PEB") == to_shared("aml-lmu", "EBO") == "erythroblast"
    for unscorable in (
        ("aml-lmu", "KSC"),
        ("bm-mll", "ART"),
        ("bm-mll", "NIF"),
        ("aml-lmu", "UNC"),
        ("aml-lmu", None),
    ):
        assert to_shared(*unscorable) is None
    assert to_shared("folder:x", "unknown cell") is None
    # issue 10: a source without a shared mapping (e.g. a newly registered one) gives None for every
    # label instead of raising; its labels stay usable within the source (harmonise "native")
    assert to_shared("pbc", "ig") is None
    assert harmonise(["pbc", "pbc"], ["ig", "x"]) == ["ig", "x"]


def test_harmonise() -> None:
    assert harmonise(["aml-lmu", "aml-lmu"], ["NGS", "UNC"]) == ["NGS", None]
    assert harmonise(["aml-lmu", "bm-mll"], ["NGS", "NGS"]) == ["aml-lmu:NGS", "bm-mll:NGS"]
    assert harmonise(["aml-lmu", "folder:p"], ["NGB", "neutrophil"], "shared") == ["neutrophil", "neutrophil"]
    with pytest.raises(ValueError):
        harmonise(["aml-lmu"], ["NGS"], "other")


def test_scorable_classes() -> None:
    assert scorable_classes(BM_MLL_KNOWN_COUNTS) == ["NGB"]  # ABE (8) and FGC (47) are counted, not scored
    aml = scorable_classes(AML_LMU_COUNTS)
    assert set(aml) == {c for c, n in AML_LMU_COUNTS.items() if n >= MIN_CELLS_TO_SCORE}
    assert scorable_classes({"a": 3, "b": 2}, min_cells=3) == ["a"]
