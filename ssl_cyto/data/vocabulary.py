"""Class vocabularies of the datasets and one shared vocabulary across them.

Each dataset keeps its own labels (``AML_LMU_CLASSES``, ``BM_MLL_CLASSES``: abbreviation -> full name,
as in the datasets' ``abbreviations`` files). To compare or score *across* datasets, labels are
mapped onto a small shared vocabulary (:data:`SHARED_CLASSES`) with :func:`to_shared`. The mapping is
a judgement call in several places; every such place is commented below and listed in docs/data.md.

Scoring within one dataset uses the native labels (:func:`harmonise` with ``vocabulary="native"``);
scoring across datasets uses the shared ones (``vocabulary="shared"``), dropping cells whose label
has no shared counterpart (smudge cells, artefacts, "other", not identifiable, "unassignable").

Classes too small to score: a class with fewer than :data:`MIN_CELLS_TO_SCORE` labelled cells is
counted and shown, but left out of balanced accuracy and per-class tables
(:func:`scorable_classes`). 50 cells leave at least 10 held-out cells under an 80/20 split, so a
per-class recall moves in steps of at most 0.1; below that one cell flips a class's recall by more
than 0.1 and, through balanced accuracy (a mean over classes), the headline figure with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ssl_cyto.formats.annotations import UNASSIGNABLE
from ssl_cyto.formats.errors import InputError

# Matek et al. 2019 (AML-Cytomorphology_LMU), abbreviations.txt.
AML_LMU_CLASSES: dict[str, str] = {
    "BAS": "Basophil",
    "EBO": "Erythroblast",
    "EOS": "Eosinophil",
    "KSC": "Smudge cell",
    "LYA": "Lymphocyte (atypical)",
    "LYT": "Lymphocyte (typical)",
    "MMZ": "Metamyelocyte",
    "MOB": "Monoblast",
    "MON": "Monocyte",
    "MYB": "Myelocyte",
    "MYO": "Myeloblast",
    "NGB": "Neutrophil (band)",
    "NGS": "Neutrophil (segmented)",
    "PMB": "Promyelocyte (bilobed)",
    "PMO": "Promyelocyte",
}

# Matek et al. 2021 (Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer), abbreviations.csv.
BM_MLL_CLASSES: dict[str, str] = {
    "ABE": "Abnormal eosinophil",
    "ART": "Artefact",
    "BAS": "Basophil",
    "BLA": "Blast",
    "EBO": "Erythroblast",
    "EOS": "Eosinophil",
    "FGC": "Faggot cell",
    "HAC": "Hairy cell",
    "KSC": "Smudge cell",
    "LYI": "Immature lymphocyte",
    "LYT": "Lymphocyte",
    "MMZ": "Metamyelocyte",
    "MON": "Monocyte",
    "MYB": "Myelocyte",
    "NGB": "Band neutrophil",
    "NGS": "Segmented neutrophil",
    "NIF": "Not identifiable",
    "OTH": "Other cell",
    "PEB": "Proerythroblast",
    "PLM": "Plasma cell",
    "PMO": "Promyelocyte",
}

# Cell counts of the released AML-LMU dataset (Matek et al. 2019; they sum to 18,365).
AML_LMU_COUNTS: dict[str, int] = {
    "BAS": 79, "EBO": 78, "EOS": 424, "KSC": 15, "LYA": 11, "LYT": 3937, "MMZ": 15, "MOB": 26,
    "MON": 1789, "MYB": 42, "MYO": 3268, "NGB": 109, "NGS": 8484, "PMB": 18, "PMO": 70,
}  # fmt: skip
# BM-MLL: only the counts this project could confirm (171,375 cells in all); `ssl-cyto data scan` of the
# download prints every class's count.
BM_MLL_TOTAL = 171375
BM_MLL_KNOWN_COUNTS: dict[str, int] = {"ABE": 8, "FGC": 47, "NGB": 9968}

# The shared vocabulary: the eight PBC classes (Acevedo et al. 2020) plus blast and plasma cell,
# which both target datasets have and PBC (normal blood) does not.
SHARED_CLASSES: tuple[str, ...] = (
    "basophil",
    "blast",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "plasma_cell",
    "platelet",
)

AML_LMU_TO_SHARED: dict[str, str | None] = {
    "BAS": "basophil",
    "EBO": "erythroblast",
    "EOS": "eosinophil",
    "KSC": None,  # smudge cell: a damaged cell of unknown type
    "LYA": "lymphocyte",  # judgement: atypical (reactive or neoplastic) lymphocytes kept with lymphocytes
    "LYT": "lymphocyte",
    "MMZ": "ig",  # immature granulocyte, as in PBC's "ig" (promyelocyte, myelocyte, metamyelocyte)
    "MOB": "blast",  # judgement: monoblasts and myeloblasts merged into one "blast" class
    "MON": "monocyte",
    "MYB": "ig",
    "MYO": "blast",
    "NGB": "neutrophil",  # judgement: band and segmented merged, as PBC's "neutrophil" does
    "NGS": "neutrophil",
    "PMB": "ig",  # judgement: the bilobed (APL-type) promyelocyte is still a promyelocyte
    "PMO": "ig",
}

BM_MLL_TO_SHARED: dict[str, str | None] = {
    "ABE": "eosinophil",  # judgement: abnormal eosinophils (e.g. in inv(16) AML) kept with eosinophils
    "ART": None,  # artefact
    "BAS": "basophil",
    "BLA": "blast",
    "EBO": "erythroblast",
    "EOS": "eosinophil",
    "FGC": "ig",  # judgement: faggot cells are abnormal promyelocytes (APL) with bundles of Auer rods
    "HAC": "lymphocyte",  # judgement: hairy cells are neoplastic B lymphocytes
    "KSC": None,  # smudge cell
    "LYI": "lymphocyte",  # judgement: immature lymphocytes (could also be argued to be blasts)
    "LYT": "lymphocyte",
    "MMZ": "ig",
    "MON": "monocyte",
    "MYB": "ig",
    "NGB": "neutrophil",  # judgement: band + segmented -> neutrophil (as PBC)
    "NGS": "neutrophil",
    "NIF": None,  # not identifiable
    "OTH": None,  # other cell (mixed bag)
    "PEB": "erythroblast",  # judgement: proerythroblasts counted with erythroblasts (as PBC does)
    "PLM": "plasma_cell",
    "PMO": "ig",
}

# Generic folder sources (e.g. the PBC subset): folder names, case-insensitive, onto shared names.
FOLDER_TO_SHARED: dict[str, str] = {name: name for name in SHARED_CLASSES}
FOLDER_TO_SHARED.update(
    {
        "neutrophils": "neutrophil",
        "band": "neutrophil",
        "segmented": "neutrophil",
        "lymphocytes": "lymphocyte",
        "monocytes": "monocyte",
        "eosinophils": "eosinophil",
        "basophils": "basophil",
        "erythroblasts": "erythroblast",
        "platelets": "platelet",
        "thrombocyte": "platelet",
        "immature_granulocyte": "ig",
        "immature granulocyte": "ig",
        "plasma cell": "plasma_cell",
        "plasmacell": "plasma_cell",
        "myeloblast": "blast",
    }
)

MIN_CELLS_TO_SCORE = 50


def to_shared(source: str, label: str | None) -> str | None:
    """Map a dataset label onto the shared vocabulary.

    Args:
        source: the catalog ``source`` (``aml-lmu``, ``bm-mll`` or ``folder:<name>``).
        label: the label as the source gives it (abbreviation or folder name).

    Returns:
        A name from :data:`SHARED_CLASSES`, or ``None`` when the label has no shared counterpart
        (smudge cells, artefacts, "other", "unassignable", unknown folder names, missing labels),
        and for every label of a source without a mapping here (e.g. a newly registered source):
        such labels stay usable within their source (:func:`harmonise` ``vocabulary="native"``).
    """
    if label is None or label == UNASSIGNABLE:
        return None
    if source == "aml-lmu":
        return AML_LMU_TO_SHARED.get(label)
    if source == "bm-mll":
        return BM_MLL_TO_SHARED.get(label)
    if source == "folder" or source.startswith("folder:"):
        return FOLDER_TO_SHARED.get(label.strip().lower())
    return None  # a source without a shared mapping


def full_name(source: str, label: str) -> str:
    """A readable name for a label (``NGS`` -> ``Neutrophil (segmented)``); folder labels as given."""
    table = AML_LMU_CLASSES if source == "aml-lmu" else BM_MLL_CLASSES if source == "bm-mll" else {}
    return table.get(label, label)


def harmonise(
    sources: Iterable[str], labels: Iterable[str | None], vocabulary: str = "native"
) -> list[str | None]:
    """Labels ready for scoring, within one dataset or across datasets.

    Args:
        sources: the catalog ``source`` of each cell.
        labels: the label of each cell.
        vocabulary: ``native`` keeps each dataset's labels, prefixed by the source when several sources
            are mixed (``aml-lmu:NGS``), so that equal abbreviations of different datasets are not
            silently merged; ``shared`` maps them with :func:`to_shared`.

    Returns:
        One label per cell; ``None`` for cells that cannot be scored in that vocabulary.
    """
    sources, labels = list(sources), list(labels)
    if len(sources) != len(labels):
        raise InputError(f"{len(sources)} sources but {len(labels)} labels")
    if vocabulary == "shared":
        return [to_shared(s, lab) for s, lab in zip(sources, labels, strict=True)]
    if vocabulary != "native":
        raise InputError(f"vocabulary must be 'native' or 'shared' (got {vocabulary!r})")
    mixed = len(set(sources)) > 1
    out: list[str | None] = []
    for s, lab in zip(sources, labels, strict=True):
        if lab is None or lab == UNASSIGNABLE:
            out.append(None)
        else:
            out.append(f"{s}:{lab}" if mixed else lab)
    return out


def scorable_classes(counts: Mapping[str, int], min_cells: int = MIN_CELLS_TO_SCORE) -> list[str]:
    """Classes with enough labelled cells to be scored (see the module docstring for the rule).

    Args:
        counts: labelled cells per class (e.g. ``catalog.label.value_counts()``).
        min_cells: the threshold; pass a smaller one for small generated datasets.

    Returns:
        The class names with ``count >= min_cells``, sorted.
    """
    return sorted(str(c) for c, n in counts.items() if c is not None and int(n) >= min_cells)
