"""ssl_cyto.evaluation: how good is a frozen embedding, measured against the experts.

* :mod:`~ssl_cyto.evaluation.probe` - ``ssl-cyto probe``: linear probe, kNN and retrieval on a seeded,
  saved split, with bootstrap intervals and the random-weights and colour-histogram baselines.
* :mod:`~ssl_cyto.evaluation.metrics` - classification metrics, bootstrap and paired-bootstrap
  intervals, cosine kNN, label-efficiency subsets.
* :mod:`~ssl_cyto.evaluation.baselines` - the colour-histogram "encoder" (backbone ``colour_hist``).
* :mod:`~ssl_cyto.evaluation.umap` - ``ssl-cyto umap``: 2-D maps by class and by source.
* :mod:`~ssl_cyto.evaluation.report` - Markdown reports that start with command, data, hardware, date.

Nothing heavy is imported here; see docs/evaluation.md.
"""
