"""ssl_cyto.evaluation: how good is a frozen embedding, measured against the experts.

``ssl-cyto probe`` (:func:`ssl_cyto.evaluation.probing.probe`):

* :mod:`~ssl_cyto.evaluation.protocol` - the probe's settings and :class:`ProbeError`;
* :mod:`~ssl_cyto.evaluation.splits` - labelled cells, seeded saved splits, tasks;
* :mod:`~ssl_cyto.evaluation.classifiers` - linear probe with its C sweep, cosine kNN;
* :mod:`~ssl_cyto.evaluation.baselines` - the random-weights and colour-histogram baselines, embedded;
* :mod:`~ssl_cyto.evaluation.rater_agreement` - models beside the raters on re-annotated cells;
* :mod:`~ssl_cyto.evaluation.probing` - the orchestration; :mod:`~ssl_cyto.evaluation.probe_report`
  its report.

Shared: :mod:`~ssl_cyto.evaluation.metrics` (classification metrics, label subsets),
:mod:`~ssl_cyto.evaluation.bootstrap` (bootstrap and paired-bootstrap intervals),
:mod:`~ssl_cyto.evaluation.report` (Markdown reports that start with command, data, hardware, date).
``ssl-cyto umap``: :mod:`~ssl_cyto.evaluation.umap_map`.

Nothing is imported here; see docs/evaluation.md.
"""
