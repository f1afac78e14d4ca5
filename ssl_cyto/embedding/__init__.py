"""ssl_cyto.embedding: a ``--model`` spec -> a backbone; a backbone + cells -> an embedding folder.

* :mod:`~ssl_cyto.embedding.model_spec` - :func:`load_model` (backbone folder, ``model.json``,
  ``.ckpt`` or a name with seeded random weights);
* :mod:`~ssl_cyto.embedding.runner` - :func:`embed`, the library side of ``ssl-cyto embed``;
* :mod:`~ssl_cyto.embedding.chunks` - the resumable ``.partial/`` chunks;
* :mod:`~ssl_cyto.embedding.errors` - :class:`EmbedError`, :class:`ModelMismatchError`.

The folder itself is read and written by :mod:`ssl_cyto.formats.embeddings`.
"""

from ssl_cyto.embedding.errors import EmbedError, MissingModelError, ModelMismatchError
from ssl_cyto.embedding.model_spec import load_model, random_backbone
from ssl_cyto.embedding.runner import ORDER, embed, resolve_device

__all__ = [
    "ORDER",
    "EmbedError",
    "MissingModelError",
    "ModelMismatchError",
    "embed",
    "load_model",
    "random_backbone",
    "resolve_device",
]
