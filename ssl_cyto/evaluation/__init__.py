"""ssl_cyto.evaluation: how good is a frozen embedding, measured against the experts.

``ssl-cyto probe`` (:func:`ssl_cyto.evaluation.probing.probe`):

* :mod:`~ssl_cyto.evaluation.protocol` - what a protocol is (:class:`Protocol`), the probe's settings,
  :class:`ProbeError`; :mod:`~ssl_cyto.evaluation.holdout` (``holdout20``, ``cv5``) and
  :mod:`~ssl_cyto.evaluation.dinobloom_probe` (``dinobloom``) are the built-in protocols;
* :mod:`~ssl_cyto.evaluation.splits` - labelled cells, seeded saved splits, tasks;
* :mod:`~ssl_cyto.evaluation.classifiers` - linear probe with its C sweep, cosine kNN;
* :mod:`~ssl_cyto.evaluation.baselines` - the random-weights and colour-histogram baselines, embedded;
* :mod:`~ssl_cyto.evaluation.rater_agreement` - models beside the raters on re-annotated cells;
* :mod:`~ssl_cyto.evaluation.probing` - the one runner; :mod:`~ssl_cyto.evaluation.probe_report`
  its report; ``probe.json`` is written by :mod:`ssl_cyto.formats.probe_json`;
* :mod:`~ssl_cyto.evaluation.hash_store` - the cells' image hashes, stored or computed once;
* :mod:`~ssl_cyto.evaluation.annotation_agreement` - rater agreement of ``annotations.dat``.

Shared: :mod:`~ssl_cyto.evaluation.metrics` (classification metrics, label subsets),
:mod:`~ssl_cyto.evaluation.bootstrap` (bootstrap and paired-bootstrap intervals),
:mod:`~ssl_cyto.evaluation.report` (Markdown reports that start with command, data, hardware, date).
``ssl-cyto umap``: :mod:`~ssl_cyto.evaluation.umap_map`.

The names below load their module on first use (PEP 562); see docs/evaluation.md.
"""

from __future__ import annotations

from ssl_cyto.formats.lazy import lazy_exports

# public name -> "module:attribute", imported on first use (PEP 562)
_EXPORTS = {
    "probe": "ssl_cyto.evaluation.probing:probe",
    "headline": "ssl_cyto.evaluation.probing:headline",
    "ProbeError": "ssl_cyto.evaluation.protocol:ProbeError",
    "PROTOCOLS": "ssl_cyto.evaluation.protocol:PROTOCOLS",
    "umap": "ssl_cyto.evaluation.umap_map:umap_map",  # not "umap_map": that is the module
    "UmapError": "ssl_cyto.evaluation.umap_map:UmapError",
    "write_report": "ssl_cyto.evaluation.report:write_report",
    "format_agreement": "ssl_cyto.evaluation.annotation_agreement:format_agreement",
    "register_protocol": "ssl_cyto.evaluation.probing:register_protocol",
    "Protocol": "ssl_cyto.evaluation.protocol:Protocol",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
