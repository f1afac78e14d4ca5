"""ssl_cyto.tasks: the SSL LightningModules (``SimCLR``, ``DINO``) and their shared base ``SSLTask``.

The classes load on first access (PEP 562), so ``import ssl_cyto.tasks`` stays cheap; use the full
paths ``ssl_cyto.tasks.SimCLR`` / ``ssl_cyto.tasks.DINO`` as ``class_path`` in LightningCLI configs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DINO", "SSLTask", "SimCLR"]

_WHERE = {"SSLTask": "ssl_cyto.tasks.base", "SimCLR": "ssl_cyto.tasks.simclr", "DINO": "ssl_cyto.tasks.dino"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
