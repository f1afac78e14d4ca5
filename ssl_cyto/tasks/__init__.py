"""ssl_cyto.tasks: the SSL LightningModules and the torch-free method registry.

* :mod:`~ssl_cyto.tasks.registry` - ``METHODS`` (name -> ``"module:Class"``), ``method_names``,
  ``method_class``, ``demo_config``; imports no torch;
* :mod:`~ssl_cyto.tasks.base` - :class:`SSLTask`, the shared base (backbone, views, optimiser, schedule);
* :mod:`~ssl_cyto.tasks.momentum` - :class:`MomentumTask`, the base of methods with an EMA teacher;
* :mod:`~ssl_cyto.tasks.simclr`, :mod:`~ssl_cyto.tasks.dino`, :mod:`~ssl_cyto.tasks.dinov2` - one file
  per method.

``ssl_cyto.tasks.SimCLR``, ``ssl_cyto.tasks.DINO`` and ``ssl_cyto.tasks.SSLTask`` are the class paths
that configs (``class_path:``) and checkpoints written since the first release record, so they
resolve here. They are looked up on first access (PEP 562) rather than imported eagerly: importing
``ssl_cyto.tasks.registry`` - which ``ssl-cyto demo --help`` does for its ``--method`` choices -
runs this ``__init__`` first and must not import torch. The classes themselves are ordinary
module-level classes of their modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_cyto.formats.lazy import lazy_exports

if TYPE_CHECKING:
    from ssl_cyto.tasks.base import SSLTask
    from ssl_cyto.tasks.dino import DINO
    from ssl_cyto.tasks.dinov2 import DINOv2
    from ssl_cyto.tasks.momentum import MomentumTask
    from ssl_cyto.tasks.simclr import SimCLR

__all__ = ["DINO", "DINOv2", "MomentumTask", "SSLTask", "SimCLR"]

_EXPORTS = {
    "SSLTask": "ssl_cyto.tasks.base:SSLTask",
    "MomentumTask": "ssl_cyto.tasks.momentum:MomentumTask",
    "SimCLR": "ssl_cyto.tasks.simclr:SimCLR",
    "DINO": "ssl_cyto.tasks.dino:DINO",
    "DINOv2": "ssl_cyto.tasks.dinov2:DINOv2",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
