"""ssl_cyto.models: backbones and what is computed on their features.

* :mod:`~ssl_cyto.models.registry` - torch-free table of the project's own backbone names;
* :mod:`~ssl_cyto.models.factory` - ``build_backbone`` (timm or the registry), normalisation, input
  size, and whether a backbone is a ViT (asked of timm); names with a pretrained-weight tag are
  refused (nothing is downloaded);
* :mod:`~ssl_cyto.models.tiny_cnn`, :mod:`~ssl_cyto.models.pooling`,
  :mod:`~ssl_cyto.models.colour_hist` - the modules;
* :mod:`~ssl_cyto.models.weights` - backbone folders (``weights.pt`` + ``model.json``);
* :mod:`~ssl_cyto.models.knn` - the weighted cosine kNN used for monitoring and evaluation.

The names below are importable from here and load their module on first use (PEP 562), so the
torch-free registry stays torch-free.
"""

from __future__ import annotations

from ssl_cyto.formats.lazy import lazy_exports

# public name -> "module:attribute", imported on first use (PEP 562)
_EXPORTS = {
    "BACKBONES": "ssl_cyto.models.registry:BACKBONES",
    "backbone_names": "ssl_cyto.models.registry:backbone_names",
    "build_backbone": "ssl_cyto.models.factory:build_backbone",
    "backbone_norm": "ssl_cyto.models.factory:backbone_norm",
    "default_input_size": "ssl_cyto.models.factory:default_input_size",
    "is_vit": "ssl_cyto.models.factory:is_vit",
    "BackboneError": "ssl_cyto.models.errors:BackboneError",
    "TinyCNN": "ssl_cyto.models.tiny_cnn:TinyCNN",
    "ColourHistogram": "ssl_cyto.models.colour_hist:ColourHistogram",
    "save_backbone": "ssl_cyto.models.weights:save_backbone",
    "load_backbone_folder": "ssl_cyto.models.weights:load_backbone_folder",
    "load_weights_into": "ssl_cyto.models.weights:load_weights_into",
    "eval_transform_from_meta": "ssl_cyto.models.weights:eval_transform_from_meta",
    "knn_predict": "ssl_cyto.models.knn:knn_predict",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
