"""ssl_cyto.data: reading cells, from dataset folders to training and evaluation streams.

The documented functions and classes are importable from here and load their module on first use
(PEP 562), so ``import ssl_cyto.data.sources`` stays light::

    from ssl_cyto.data import CellDataModule, pack, scan, synthesize, verify

Modules: ``images``, ``image_hash``, ``vocabulary``, ``sources/``, ``scanning``, ``packing``,
``shard_writer``, ``verification``, ``synth/``, ``loading/``, ``datamodule`` (see
docs/architecture.md). No export shares a name with a module. Rater agreement of ``annotations.dat``
is evaluation: :mod:`ssl_cyto.evaluation.annotation_agreement`.
"""

from __future__ import annotations

from ssl_cyto.formats.lazy import lazy_exports

# public name -> "module:attribute", imported on first use (PEP 562)
_EXPORTS = {
    "scan": "ssl_cyto.data.scanning:scan",
    "scan_sources": "ssl_cyto.data.scanning:scan_sources",
    "catalog_from_path": "ssl_cyto.data.scanning:catalog_from_path",
    "counts_table": "ssl_cyto.data.scanning:counts_table",
    "pack": "ssl_cyto.data.packing:pack",
    "PackError": "ssl_cyto.data.packing:PackError",
    "PackOptionsMismatch": "ssl_cyto.data.packing:PackOptionsMismatch",
    "verify": "ssl_cyto.data.verification:verify",
    "synthesize": "ssl_cyto.data.synth:synthesize",
    "ensure_cached": "ssl_cyto.data.synth:ensure_cached",
    "LAYOUTS": "ssl_cyto.data.synth:LAYOUTS",
    "layout_classes": "ssl_cyto.data.synth:layout_classes",
    "open_source": "ssl_cyto.data.sources:open_source",
    "detect_source": "ssl_cyto.data.sources:detect_source",
    "register_source": "ssl_cyto.data.sources:register_source",
    "CellSource": "ssl_cyto.data.sources:CellSource",
    "CellRecord": "ssl_cyto.data.sources:CellRecord",
    "SourceError": "ssl_cyto.data.sources:SourceError",
    "open_rgb": "ssl_cyto.data.images:open_rgb",
    "ImageDecodeError": "ssl_cyto.data.images:ImageDecodeError",
    "resolve_data": "ssl_cyto.data.loading:resolve_data",
    "eval_loader": "ssl_cyto.data.loading:eval_loader",
    "train_loader": "ssl_cyto.data.loading:train_loader",
    "DataSpecError": "ssl_cyto.data.loading:DataSpecError",
    "CellDataModule": "ssl_cyto.data.datamodule:CellDataModule",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
