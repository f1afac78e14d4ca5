"""ssl_cyto.training: the ``ssl-cyto fit`` entry (LightningCLI), its callbacks, and the export of a
checkpoint's backbone.

* :mod:`~ssl_cyto.training.fit` - :func:`~ssl_cyto.training.fit.run_fit`, automatic resume, loggers;
* :mod:`~ssl_cyto.training.preemption` - signal flag, atomic checkpoint files, cluster plugins
  (``SLURMEnvironment(auto_requeue=False)``), ``scontrol requeue``, the resume choice by global step;
* :mod:`~ssl_cyto.training.callbacks` - throughput, online kNN, collapse / NaN guard, ``last.ckpt``,
  run metadata, preemption, step budget;
* :mod:`~ssl_cyto.training.export` - :func:`~ssl_cyto.training.export.export_checkpoint`,
  :func:`~ssl_cyto.training.export.backbone_from_checkpoint`.
"""
