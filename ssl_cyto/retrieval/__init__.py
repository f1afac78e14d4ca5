"""ssl_cyto.retrieval: similar-cell search over embeddings.

* :mod:`ssl_cyto.retrieval.index` -- build / load / search a FAISS index (cosine similarity).
* :mod:`ssl_cyto.retrieval.query` -- embed query images (or pick cells by id) and find neighbours.
* :mod:`ssl_cyto.retrieval.gallery` -- the query-plus-neighbours PNG.
* :mod:`ssl_cyto.retrieval.metrics` -- precision@k, AP@k, mAP@k against expert labels.

Nothing heavy is imported here; import the submodule you need.
"""
