"""ssl_cyto.tasks: the SSL LightningModules and the torch-free method registry.

* :mod:`~ssl_cyto.tasks.registry` - ``METHODS`` (name -> ``"module:Class"``), ``method_names``,
  ``method_class``, ``demo_config``; imports no torch;
* :mod:`~ssl_cyto.tasks.base` - :class:`SSLTask`, the shared base (backbone, views, optimiser, schedule);
* :mod:`~ssl_cyto.tasks.momentum` - :class:`MomentumTask`, the base of methods with an EMA teacher;
* :mod:`~ssl_cyto.tasks.simclr`, :mod:`~ssl_cyto.tasks.dino` - one file per method.

``ssl_cyto.tasks.SimCLR``, ``ssl_cyto.tasks.DINO`` and ``ssl_cyto.tasks.SSLTask`` are the class paths
that configs (``class_path:``) and checkpoints written since the first release record, so they
resolve here. They are looked up on first access (PEP 562) rather than imported eagerly: importing
``ssl_cyto.tasks.registry`` - which ``ssl-cyto demo --help`` does for its ``--method`` choices -
runs this ``__init__`` first and must not import torch. The classes themselves are ordinary
module-level classes of their modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl_cyto.tasks.base import SSLTask
    from ssl_cyto.tasks.dino import DINO
    from ssl_cyto.tasks.momentum import MomentumTask
    from ssl_cyto.tasks.simclr import SimCLR

__all__ = ["DINO", "MomentumTask", "SSLTask", "SimCLR"]

_WHERE = {
    "SSLTask": "ssl_cyto.tasks.base",
    "MomentumTask": "ssl_cyto.tasks.momentum",
    "SimCLR": "ssl_cyto.tasks.simclr",
    "DINO": "ssl_cyto.tasks.dino",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
