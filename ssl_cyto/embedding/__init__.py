"""ssl_cyto.embedding: a ``--model`` spec -> a backbone; a backbone + cells -> an embedding folder.

* :mod:`~ssl_cyto.embedding.model_spec` - :func:`load_model` (backbone folder, ``model.json``,
  ``.ckpt``, or a name with seeded random weights or ``weights=FILE``);
* :mod:`~ssl_cyto.embedding.encoder` - :class:`Encoder`, the one path from images to embeddings
  (preprocessing from ``model.json``, device, batching, the weights check) for embed, query, serve;
* :mod:`~ssl_cyto.embedding.runner` - :func:`embed`, the library side of ``ssl-cyto embed``;
* :mod:`~ssl_cyto.embedding.chunks` - the resumable ``.partial/`` chunks;
* :mod:`~ssl_cyto.embedding.errors` - :class:`EmbedError`, :class:`ModelMismatchError`.

The folder itself is read and written by :mod:`ssl_cyto.formats.embeddings`. The names below load
their module on first use (PEP 562).
"""

from __future__ import annotations

from ssl_cyto.formats.lazy import lazy_exports

# public name -> "module:attribute", imported on first use (PEP 562)
_EXPORTS = {
    "ORDER": "ssl_cyto.embedding.runner:ORDER",
    "MISSING_FILE": "ssl_cyto.embedding.runner:MISSING_FILE",
    "EmbedError": "ssl_cyto.embedding.errors:EmbedError",
    "MissingModelError": "ssl_cyto.embedding.errors:MissingModelError",
    "ModelMismatchError": "ssl_cyto.embedding.errors:ModelMismatchError",
    "embed": "ssl_cyto.embedding.runner:embed",
    "is_model_name": "ssl_cyto.embedding.model_spec:is_model_name",
    "load_model": "ssl_cyto.embedding.model_spec:load_model",
    "random_backbone": "ssl_cyto.embedding.model_spec:random_backbone",
    "resolve_device": "ssl_cyto.embedding.encoder:resolve_device",
    "Encoder": "ssl_cyto.embedding.encoder:Encoder",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
