"""The layouts the generator writes: names, folders, fields of view, class lists.

* ``aml-lmu``: ``AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff`` (AML-Cytomorphology_LMU, Matek et al. 2019).
* ``bm-mll``: ``BM_cytomorphology_data/<CLS>/[<range>/]<CLS>_NNNNN.jpg``
  (Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer, Matek et al. 2021).
* ``folder``: an ImageFolder tree ``<class>/<class>_NNNN.png`` with generic class names.
"""

from __future__ import annotations

from ssl_cyto.data.vocabulary import AML_LMU_CLASSES, BM_MLL_CLASSES
from ssl_cyto.formats.errors import InputError

GENERATOR_VERSION = "1"
LAYOUTS = ("aml-lmu", "bm-mll", "folder")
AML_DIR = "AML-Cytomorphology"
BM_DIR = "BM_cytomorphology_data"
# Field of view (micrometres across the image) and default image size per layout. AML-LMU: 400 px at
# 14.14 px/um (100x oil); BM-MLL: 250 px crops at 40x (scale not published; cells fill a similar share
# of the crop); folder: PBC-like 360 px crops.
FIELD_UM = {"aml-lmu": 400 / 14.14, "bm-mll": 24.0, "folder": 26.0}
DEFAULT_SIZE = {"aml-lmu": 400, "bm-mll": 250, "folder": 256}
FOLDER_CLASSES = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
CHUNK = 16  # cells rendered together; part of the seed, so changing it changes the images


class SynthError(InputError):
    """Bad arguments for the generator (unknown layout, non-positive counts...)."""


def layout_classes(layout: str) -> list[str]:
    """The class names a layout is written with (dataset abbreviations, or generic folder names).

    Raises:
        SynthError: an unknown layout.
    """
    if layout == "aml-lmu":
        return sorted(AML_LMU_CLASSES)
    if layout == "bm-mll":
        return sorted(BM_MLL_CLASSES)
    if layout == "folder":
        return list(FOLDER_CLASSES)
    raise SynthError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def range_folder(index: int, count: int, range_size: int = 1000) -> str:
    """The BM-MLL range folder of cell ``index`` (1-based) in a class of ``count`` cells."""
    start = (index - 1) // range_size * range_size + 1
    end = min(start + range_size - 1, count)
    return f"{start:04d}-{end:04d}"
