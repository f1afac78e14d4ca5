"""Loading cells for training, online kNN and embedding.

* :mod:`~ssl_cyto.data.loading.resolve` - what a ``data`` string points at (:func:`resolve_data`);
* :mod:`~ssl_cyto.data.loading.decode` - samples and files to PIL RGB, batch collation;
* :mod:`~ssl_cyto.data.loading.seeding` - stable seeds and DataLoader worker identity;
* :mod:`~ssl_cyto.data.loading.acceptance` - source weights decided once per cell and pass;
* :mod:`~ssl_cyto.data.loading.train` - fixed-length, seeded training streams;
* :mod:`~ssl_cyto.data.loading.training_loader` - :func:`train_loader` from a :class:`TrainLoaderOptions`;
* :mod:`~ssl_cyto.data.loading.evaluation` - every cell once (:func:`eval_loader`), the labelled subset.

:class:`~ssl_cyto.data.datamodule.CellDataModule` puts them together for Lightning.
"""

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
