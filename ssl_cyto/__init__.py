"""ssl_cyto: self-supervised learning on single-cell cytomorphology images.

One function per pipeline step, importable from the package (loaded on first use, PEP 562, so that
``import ssl_cyto`` and ``ssl-cyto --help`` stay instant)::

    import ssl_cyto
    catalog = ssl_cyto.scan([("folder:pbc", "path/to/images")])      # -> catalog DataFrame
    ssl_cyto.pack("catalog.parquet", "shards/")                       # -> shards + index.json
    ckpt = ssl_cyto.fit(["--config", "configs/smoke_simclr.yaml"])   # -> last.ckpt
    ssl_cyto.export(ckpt, "backbone/")                                # -> backbone/ + model.json
    ssl_cyto.embed("backbone/", "shards/", "emb/")                    # -> embedding folder
    ssl_cyto.build_index("emb/")                                      # -> emb/index.faiss
    ssl_cyto.query(images=["cell.jpg"], index="emb/", k=10)           # -> neighbours
    ssl_cyto.probe("emb/")                                            # -> metrics + report.md
    ssl_cyto.umap("emb/")                                             # -> PNG maps

The modules are named by what they hold (``data.scanning``, ``embedding.runner``,
``retrieval.search``, ...), never like these functions; see docs/architecture.md.
"""

from __future__ import annotations

import os

from ssl_cyto.formats.lazy import lazy_exports

# pyarrow's bundled jemalloc starts a background purging thread when libarrow loads
# ("background_thread:true" compiled in). DataLoader workers and DDP ranks are forked from processes
# that have loaded it, and a fork taken while that thread holds an allocator lock can leave the child
# blocked on a futex before it runs any code: seen once in a 2-rank DDP test here (a loader worker
# stuck in fork, its rank waiting for data forever). Arrow reads this variable when libarrow loads;
# set before any pyarrow import, it turns the thread off (a user's own setting wins).
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

__version__ = "0.1.0"

# public name -> "module:attribute"
_EXPORTS = {
    "scan": "ssl_cyto.data.scanning:scan",
    "pack": "ssl_cyto.data.packing:pack",
    "verify": "ssl_cyto.data.verification:verify",
    "synthesize": "ssl_cyto.data.synth:synthesize",
    "CellDataModule": "ssl_cyto.data.datamodule:CellDataModule",
    "SimCLR": "ssl_cyto.tasks.simclr:SimCLR",
    "DINO": "ssl_cyto.tasks.dino:DINO",
    "fit": "ssl_cyto.training.fit:run_fit",
    "export": "ssl_cyto.training.export:export_checkpoint",
    "embed": "ssl_cyto.embedding.runner:embed",
    "load_model": "ssl_cyto.embedding.model_spec:load_model",
    "build_index": "ssl_cyto.retrieval.index_io:build_index",
    "query": "ssl_cyto.retrieval.search:query",
    "probe": "ssl_cyto.evaluation.probing:probe",
    "umap": "ssl_cyto.evaluation.umap_map:umap_map",
    "read_embedding_folder": "ssl_cyto.formats.embeddings:read_embedding_folder",
    "run_demo": "ssl_cyto.demo.pipeline:run_demo",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
