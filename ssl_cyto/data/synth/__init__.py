"""Generated single-cell images in exactly the layouts of the real datasets.

The two target datasets (AML-Cytomorphology_LMU, Matek et al. 2019; Bone-Marrow-Cytomorphology_MLL_
Helmholtz_Fraunhofer, Matek et al. 2021) cannot be downloaded in tests or CI, so this package writes
look-alikes with the same folder structure, file names, formats and side files
(:mod:`~ssl_cyto.data.synth.writer`):

* ``aml-lmu``: ``AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff`` (RGBA, 400x400), ``annotations.dat`` and
  ``abbreviations.txt``.
* ``bm-mll``: ``BM_cytomorphology_data/<CLS>/[<range>/]<CLS>_NNNNN.jpg`` (RGB JPEG, 250x250) and
  ``abbreviations.csv``.
* ``folder``: an ImageFolder tree ``<class>/<class>_NNNN.png`` with a ``manifest.csv``.

Cells are drawn by :func:`render_cells` (:mod:`~ssl_cyto.data.synth.render`) from a class morphology
(:mod:`~ssl_cyto.data.synth.morph`) with the primitives of :mod:`~ssl_cyto.data.synth.shapes`. The
stain colours are randomised per image with a spread as large as the differences between class means,
so colour alone separates classes only weakly: the classes differ mainly in shape, size ratios and
texture.

Everything is deterministic for a seed: cell ``i`` of class ``c`` is drawn from a random generator
seeded with ``(seed, layout, c, chunk)`` (chunks of :data:`CHUNK` cells).

Modules: ``layouts`` (names, sizes, :class:`SynthError`), ``morph``, ``shapes``, ``render``,
``writer`` (:func:`synthesize`), ``cache`` (:func:`ensure_cached`).
"""

from ssl_cyto.data.synth.cache import cache_dir, ensure_cached
from ssl_cyto.data.synth.layouts import (
    AML_DIR,
    BM_DIR,
    CHUNK,
    DEFAULT_SIZE,
    FIELD_UM,
    FOLDER_CLASSES,
    GENERATOR_VERSION,
    LAYOUTS,
    SynthError,
    layout_classes,
    range_folder,
)
from ssl_cyto.data.synth.morph import CHROMATIN, FOLDER_MORPHS, MORPHS, Morph, morph_of
from ssl_cyto.data.synth.render import generate_arrays, render_cells
from ssl_cyto.data.synth.writer import synthesize

__all__ = [
    "AML_DIR",
    "BM_DIR",
    "CHROMATIN",
    "CHUNK",
    "DEFAULT_SIZE",
    "FIELD_UM",
    "FOLDER_CLASSES",
    "FOLDER_MORPHS",
    "GENERATOR_VERSION",
    "LAYOUTS",
    "MORPHS",
    "Morph",
    "SynthError",
    "cache_dir",
    "ensure_cached",
    "generate_arrays",
    "layout_classes",
    "morph_of",
    "range_folder",
    "render_cells",
    "synthesize",
]
