"""Loading cells for training, online kNN and embedding.

* :mod:`~ssl_cyto.data.loading.resolve` - what a ``data`` string points at (:func:`resolve_data`);
* :mod:`~ssl_cyto.data.loading.decode` - samples and files to PIL RGB, batch collation;
* :mod:`~ssl_cyto.data.loading.seeding` - stable seeds and DataLoader worker identity;
* :mod:`~ssl_cyto.data.loading.acceptance` - source weights decided once per cell and pass;
* :mod:`~ssl_cyto.data.loading.train` - fixed-length, seeded training streams;
* :mod:`~ssl_cyto.data.loading.training_loader` - :func:`train_loader` from a :class:`TrainLoaderOptions`;
* :mod:`~ssl_cyto.data.loading.evaluation` - every cell once (:func:`eval_loader`), the labelled subset.

:class:`~ssl_cyto.data.datamodule.CellDataModule` puts them together for Lightning.

The names below are looked up on first access (PEP 562, :func:`ssl_cyto.formats.lazy.lazy_exports`):
importing one light submodule (``ssl_cyto.data.loading.seeding``, which the tasks use) does not import
pandas, pyarrow and webdataset with the readers, so a training step needs only what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_cyto.formats.lazy import lazy_exports

if TYPE_CHECKING:
    from ssl_cyto.data.loading.acceptance import source_accept
    from ssl_cyto.data.loading.decode import (
        IMAGE_KEYS,
        check_file,
        check_sample,
        collate_eval,
        collate_views,
        decode_rgb,
        decode_sample,
        image_key,
        read_rgb,
        row_path,
        sample_name,
    )
    from ssl_cyto.data.loading.evaluation import (
        CatalogEvalDataset,
        EvalLoader,
        LabelledSubset,
        RankShareSampler,
        ReadErrors,
        ShardEvalStream,
        collate_catalog,
        eval_loader,
        pick_labelled,
    )
    from ssl_cyto.data.loading.resolve import DATA_FORMS, DataSpecError, ResolvedData, resolve_data
    from ssl_cyto.data.loading.seeding import current_worker, mix_seed
    from ssl_cyto.data.loading.train import (
        CatalogTrainDataset,
        EpochLoader,
        FixedLengthSampler,
        ShardTrainStream,
    )
    from ssl_cyto.data.loading.training_loader import TrainLoaderOptions, train_loader

__all__ = [
    "DATA_FORMS",
    "IMAGE_KEYS",
    "CatalogEvalDataset",
    "CatalogTrainDataset",
    "DataSpecError",
    "EpochLoader",
    "EvalLoader",
    "FixedLengthSampler",
    "LabelledSubset",
    "RankShareSampler",
    "ReadErrors",
    "ResolvedData",
    "ShardEvalStream",
    "ShardTrainStream",
    "check_file",
    "check_sample",
    "collate_catalog",
    "collate_eval",
    "collate_views",
    "current_worker",
    "decode_rgb",
    "decode_sample",
    "eval_loader",
    "image_key",
    "mix_seed",
    "pick_labelled",
    "read_rgb",
    "resolve_data",
    "row_path",
    "sample_name",
    "source_accept",
    "TrainLoaderOptions",
    "train_loader",
]

_EXPORTS = {
    "IMAGE_KEYS": "ssl_cyto.data.loading.decode:IMAGE_KEYS",
    "check_file": "ssl_cyto.data.loading.decode:check_file",
    "check_sample": "ssl_cyto.data.loading.decode:check_sample",
    "collate_eval": "ssl_cyto.data.loading.decode:collate_eval",
    "collate_views": "ssl_cyto.data.loading.decode:collate_views",
    "decode_rgb": "ssl_cyto.data.loading.decode:decode_rgb",
    "decode_sample": "ssl_cyto.data.loading.decode:decode_sample",
    "image_key": "ssl_cyto.data.loading.decode:image_key",
    "read_rgb": "ssl_cyto.data.loading.decode:read_rgb",
    "row_path": "ssl_cyto.data.loading.decode:row_path",
    "sample_name": "ssl_cyto.data.loading.decode:sample_name",
    "CatalogEvalDataset": "ssl_cyto.data.loading.evaluation:CatalogEvalDataset",
    "EvalLoader": "ssl_cyto.data.loading.evaluation:EvalLoader",
    "LabelledSubset": "ssl_cyto.data.loading.evaluation:LabelledSubset",
    "RankShareSampler": "ssl_cyto.data.loading.evaluation:RankShareSampler",
    "ReadErrors": "ssl_cyto.data.loading.evaluation:ReadErrors",
    "ShardEvalStream": "ssl_cyto.data.loading.evaluation:ShardEvalStream",
    "collate_catalog": "ssl_cyto.data.loading.evaluation:collate_catalog",
    "eval_loader": "ssl_cyto.data.loading.evaluation:eval_loader",
    "pick_labelled": "ssl_cyto.data.loading.evaluation:pick_labelled",
    "DATA_FORMS": "ssl_cyto.data.loading.resolve:DATA_FORMS",
    "DataSpecError": "ssl_cyto.data.loading.resolve:DataSpecError",
    "ResolvedData": "ssl_cyto.data.loading.resolve:ResolvedData",
    "resolve_data": "ssl_cyto.data.loading.resolve:resolve_data",
    "current_worker": "ssl_cyto.data.loading.seeding:current_worker",
    "mix_seed": "ssl_cyto.data.loading.seeding:mix_seed",
    "CatalogTrainDataset": "ssl_cyto.data.loading.train:CatalogTrainDataset",
    "EpochLoader": "ssl_cyto.data.loading.train:EpochLoader",
    "FixedLengthSampler": "ssl_cyto.data.loading.train:FixedLengthSampler",
    "ShardTrainStream": "ssl_cyto.data.loading.train:ShardTrainStream",
    "TrainLoaderOptions": "ssl_cyto.data.loading.training_loader:TrainLoaderOptions",
    "train_loader": "ssl_cyto.data.loading.training_loader:train_loader",
    "source_accept": "ssl_cyto.data.loading.acceptance:source_accept",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
