"""ssl_cyto.retrieval: similar-cell search over an embedding folder.

* :mod:`~ssl_cyto.retrieval.faiss_index` - FAISS index kinds, parameters, :func:`make_index`,
  :func:`normalize` (cosine similarity), GPU resources;
* :mod:`~ssl_cyto.retrieval.index_io` - :func:`build_index` / :func:`load_index` (the one reader and
  writer of ``index.faiss`` + ``index.json``) and ``search``;
* :mod:`~ssl_cyto.retrieval.search` - :func:`query`: embed query images (or pick cells by id) and
  find their neighbours;
* :mod:`~ssl_cyto.retrieval.gallery` - the query-plus-neighbours PNG;
* :mod:`~ssl_cyto.retrieval.metrics` - precision@k, AP@k, mAP@k against expert labels.

The names below load their module on first use (PEP 562). The function ``index_io.search`` is not
exported here: ``ssl_cyto.retrieval.search`` is the module.
"""

from __future__ import annotations

from ssl_cyto.formats.lazy import lazy_exports

# public name -> "module:attribute", imported on first use (PEP 562)
_EXPORTS = {
    "KINDS": "ssl_cyto.retrieval.faiss_index:KINDS",
    "GpuUnavailableError": "ssl_cyto.retrieval.errors:GpuUnavailableError",
    "RetrievalError": "ssl_cyto.retrieval.errors:RetrievalError",
    "ModelMismatchError": "ssl_cyto.embedding.errors:ModelMismatchError",
    "build_index": "ssl_cyto.retrieval.index_io:build_index",
    "format_table": "ssl_cyto.retrieval.search:format_table",
    "load_index": "ssl_cyto.retrieval.index_io:load_index",
    "make_index": "ssl_cyto.retrieval.faiss_index:make_index",
    "normalize": "ssl_cyto.retrieval.faiss_index:normalize",
    "query": "ssl_cyto.retrieval.search:query",
    "resolve_index_path": "ssl_cyto.retrieval.index_io:resolve_index_path",
    "resolve_model": "ssl_cyto.retrieval.search:resolve_model",
    "save_gallery": "ssl_cyto.retrieval.gallery:save_gallery",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
