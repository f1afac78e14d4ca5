"""ssl_cyto.retrieval: similar-cell search over an embedding folder.

* :mod:`~ssl_cyto.retrieval.faiss_index` - FAISS index kinds, parameters, :func:`make_index`,
  :func:`normalize` (cosine similarity), GPU resources;
* :mod:`~ssl_cyto.retrieval.index_io` - :func:`build_index` / :func:`load_index` (the one reader and
  writer of ``index.faiss`` + ``index.json``) and ``search``;
* :mod:`~ssl_cyto.retrieval.search` - :func:`query`: embed query images (or pick cells by id) and
  find their neighbours;
* :mod:`~ssl_cyto.retrieval.gallery` - the query-plus-neighbours PNG;
* :mod:`~ssl_cyto.retrieval.metrics` - precision@k, AP@k, mAP@k against expert labels.

The function ``index_io.search`` is not exported here: ``ssl_cyto.retrieval.search`` is the module.
"""

from ssl_cyto.retrieval.errors import GpuUnavailableError, RetrievalError
from ssl_cyto.retrieval.faiss_index import KINDS, make_index, normalize
from ssl_cyto.retrieval.index_io import build_index, load_index, resolve_index_path
from ssl_cyto.retrieval.search import ModelMismatchError, format_table, query, resolve_model

__all__ = [
    "KINDS",
    "GpuUnavailableError",
    "ModelMismatchError",
    "RetrievalError",
    "build_index",
    "format_table",
    "load_index",
    "make_index",
    "normalize",
    "query",
    "resolve_index_path",
    "resolve_model",
]
