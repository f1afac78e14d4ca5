"""ssl_cyto.formats: the one reader and writer of each artefact, the error base class, provenance.

The bottom layer: it imports nothing else from ``ssl_cyto``. One module per artefact:

* :mod:`~ssl_cyto.formats.catalog` - ``catalog.parquet``;
* :mod:`~ssl_cyto.formats.shard_index` - ``shards/index.json`` and shard/sample names;
* :mod:`~ssl_cyto.formats.model_json` - a backbone folder's ``model.json`` (+ ``weights.pt``);
* :mod:`~ssl_cyto.formats.embeddings` - the embedding folder (``embeddings.npy``, ``cells.parquet``, ...);
* :mod:`~ssl_cyto.formats.annotations` - AML-LMU's ``annotations.dat``;
* :mod:`~ssl_cyto.formats.errors` - :class:`SslCytoError`, the base of every expected error;
* :mod:`~ssl_cyto.formats.hashing` - SHA-256 of files and bytes;
* :mod:`~ssl_cyto.formats.image_hashes` - ``image_hashes.parquet`` (perceptual hashes of the cells);
* :mod:`~ssl_cyto.formats.probe_json` - ``probe.json``, written by every probe protocol;
* :mod:`~ssl_cyto.formats.provenance` - git commit, package versions, hardware summary.
"""
