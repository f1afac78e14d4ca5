"""ssl_cyto.models: backbones and what is computed on their features.

* :mod:`~ssl_cyto.models.registry` - torch-free table of the project's own backbone names;
* :mod:`~ssl_cyto.models.factory` - ``build_backbone`` (timm or the registry), normalisation, input
  size, and whether a backbone is a ViT (asked of timm);
* :mod:`~ssl_cyto.models.tiny_cnn`, :mod:`~ssl_cyto.models.pooling`,
  :mod:`~ssl_cyto.models.colour_hist` - the modules;
* :mod:`~ssl_cyto.models.weights` - backbone folders (``weights.pt`` + ``model.json``);
* :mod:`~ssl_cyto.models.knn` - the weighted cosine kNN used for monitoring and evaluation.
"""
