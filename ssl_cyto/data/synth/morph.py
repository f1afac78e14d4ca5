"""Class morphologies of the generated cells: one :class:`Morph` per cell type.

Values are rough textbook proportions (e.g. Bain, "Blood Cells", 5th ed.), not measurements; the
abbreviations follow the AML-LMU (Matek et al. 2019) and BM-MLL (Matek et al. 2021) datasets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Morph:
    """Class-dependent morphology of one cell type (sizes in micrometres or fractions of the cell).

    Attributes:
        diameter_um: mean cell diameter.
        nucleus: nucleus shape: round, oval, kidney, band, segmented, bilobed, smudge, scattered, none.
        nuc_frac: nucleus radius / cell radius.
        chromatin: texture: coarse, clumped, fine, dense, streaky.
        lobes: (min, max) lobes of a segmented nucleus.
        nucleoli: (min, max) pale nucleoli.
        cyto_blue: basophilia of the cytoplasm (azure density).
        cyto_pink: acidophilia of the cytoplasm (eosin density).
        granules: none, fine, azurophil, eo, baso, mixed.
        vacuoles: (min, max) cytoplasmic vacuoles.
        hairy: hairy projections on the outline.
        rods: (min, max) Auer rods.
        hof: pale perinuclear zone.
        irregular: amplitude of the outline's low-order harmonics.
        eccentric: offset of the nucleus centre, as a fraction of the cell radius.
        no_cytoplasm: naked (smudged) nucleus or debris.
        blur: optical blur in pixels at 400 px (not-identifiable cells).
        connector: strand radius between lobes, as a fraction of the lobe radius.
    """

    diameter_um: float
    nucleus: str
    nuc_frac: float
    chromatin: str = "coarse"
    lobes: tuple[int, int] = (1, 1)
    nucleoli: tuple[int, int] = (0, 0)
    cyto_blue: float = 0.3
    cyto_pink: float = 0.2
    granules: str = "none"
    vacuoles: tuple[int, int] = (0, 0)
    hairy: bool = False
    rods: tuple[int, int] = (0, 0)
    hof: bool = False
    irregular: float = 0.03
    eccentric: float = 0.0
    no_cytoplasm: bool = False
    blur: float = 0.0
    connector: float = 0.2


# One morphology per cell type; abbreviations follow the datasets. Values are rough textbook
# proportions (e.g. Bain, "Blood Cells", 5th ed.), not measurements.
MORPHS: dict[str, Morph] = {
    "NGS": Morph(
        12.5, "segmented", 0.62, "coarse", lobes=(3, 5), cyto_blue=0.12, cyto_pink=0.28, granules="fine"
    ),
    "NGB": Morph(12.5, "band", 0.62, "coarse", cyto_blue=0.12, cyto_pink=0.28, granules="fine"),
    "MMZ": Morph(13.0, "kidney", 0.58, "coarse", cyto_blue=0.16, cyto_pink=0.26, granules="fine"),
    "MYB": Morph(
        14.0, "oval", 0.55, "coarse", cyto_blue=0.22, cyto_pink=0.24, granules="azurophil", eccentric=0.2
    ),
    "PMO": Morph(
        17.0,
        "oval",
        0.6,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.3,
        cyto_pink=0.2,
        granules="azurophil",
        eccentric=0.22,
        hof=True,
    ),
    "PMB": Morph(
        16.0,
        "bilobed",
        0.6,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.28,
        cyto_pink=0.2,
        granules="azurophil",
        connector=0.7,
    ),
    "MYO": Morph(15.0, "round", 0.78, "fine", nucleoli=(1, 3), cyto_blue=0.38, cyto_pink=0.12, rods=(0, 1)),
    "BLA": Morph(15.0, "round", 0.78, "fine", nucleoli=(1, 3), cyto_blue=0.38, cyto_pink=0.12, rods=(0, 1)),
    "MOB": Morph(
        18.0,
        "round",
        0.68,
        "fine",
        nucleoli=(1, 2),
        cyto_blue=0.32,
        cyto_pink=0.14,
        vacuoles=(0, 3),
        irregular=0.05,
    ),
    "MON": Morph(
        17.0,
        "kidney",
        0.6,
        "fine",
        cyto_blue=0.26,
        cyto_pink=0.16,
        granules="fine",
        vacuoles=(2, 6),
        irregular=0.06,
    ),
    "LYT": Morph(9.0, "round", 0.84, "clumped", cyto_blue=0.42, cyto_pink=0.08),
    "LYA": Morph(13.0, "oval", 0.62, "coarse", cyto_blue=0.5, cyto_pink=0.08, irregular=0.08, eccentric=0.12),
    "LYI": Morph(11.0, "round", 0.82, "fine", nucleoli=(1, 2), cyto_blue=0.45, cyto_pink=0.08),
    "HAC": Morph(14.0, "oval", 0.52, "fine", cyto_blue=0.3, cyto_pink=0.1, hairy=True),
    "EOS": Morph(
        13.5, "bilobed", 0.55, "coarse", cyto_blue=0.1, cyto_pink=0.22, granules="eo", connector=0.2
    ),
    "ABE": Morph(14.5, "oval", 0.5, "coarse", cyto_blue=0.15, cyto_pink=0.2, granules="mixed"),
    "BAS": Morph(
        11.5, "bilobed", 0.55, "coarse", cyto_blue=0.16, cyto_pink=0.16, granules="baso", connector=0.6
    ),
    "EBO": Morph(9.5, "round", 0.58, "dense", cyto_blue=0.24, cyto_pink=0.26, irregular=0.015),
    "PEB": Morph(17.0, "round", 0.72, "fine", nucleoli=(1, 2), cyto_blue=0.62, cyto_pink=0.06, hof=True),
    "PLM": Morph(13.0, "round", 0.45, "clumped", cyto_blue=0.55, cyto_pink=0.06, eccentric=0.42, hof=True),
    "FGC": Morph(
        17.0,
        "oval",
        0.58,
        "fine",
        nucleoli=(0, 1),
        cyto_blue=0.3,
        cyto_pink=0.2,
        granules="azurophil",
        rods=(6, 12),
        eccentric=0.15,
    ),
    "KSC": Morph(14.0, "smudge", 0.8, "streaky", no_cytoplasm=True),
    "ART": Morph(14.0, "none", 0.0, "streaky", no_cytoplasm=True, irregular=0.3),
    "NIF": Morph(13.0, "kidney", 0.6, "coarse", cyto_blue=0.25, cyto_pink=0.18, blur=6.0),
    "OTH": Morph(15.0, "scattered", 0.6, "dense", cyto_blue=0.3, cyto_pink=0.14),
}
FOLDER_MORPHS = {
    "basophil": "BAS",
    "eosinophil": "EOS",
    "lymphocyte": "LYT",
    "monocyte": "MON",
    "neutrophil": "NGS",
}
# Chromatin: (mean density, texture scale as a fraction of the cell radius, contrast).
CHROMATIN = {
    "coarse": (1.0, 0.1, 0.45),
    "clumped": (1.15, 0.08, 0.6),
    "fine": (0.75, 0.035, 0.2),
    "dense": (1.55, 0.06, 0.12),
    "streaky": (0.55, 0.12, 0.5),
}


def morph_of(label: str) -> Morph:
    """The morphology of a class abbreviation (``NGS``...) or of a generic folder class name."""
    return MORPHS[FOLDER_MORPHS.get(label, label)]
