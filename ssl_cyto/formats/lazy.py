"""Package-level names that load their module on first use (PEP 562): one implementation for every
``__init__.py`` that exposes its documented functions without importing torch at ``import`` time."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from ssl_cyto.formats.imports import import_object


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, resolving ``exports`` (name -> ``"module:attribute"``).

    Usage, at the end of a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return import_object(target)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
