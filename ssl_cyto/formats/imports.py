"""The one resolver of ``"module:Class"`` strings (registries of backbones, sources, methods, the task
class a checkpoint records, lazy package exports)."""

from __future__ import annotations

import importlib
from typing import Any

from ssl_cyto.formats.errors import InputError

__all__ = ["ImportTargetError", "import_object"]


class ImportTargetError(InputError):
    """A ``"module:Class"`` (or dotted ``module.Class``) string that does not name an importable object."""


def import_object(target: str) -> Any:
    """The object a ``"package.module:Name[.Inner]"`` string names (a dotted ``package.module.Name`` is
    read the same way, split at its last dot).

    Raises:
        ImportTargetError: the module cannot be imported or has no such attribute (message names both).
    """
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ImportTargetError(f"{target!r}: expected 'module:Class' (or 'module.Class')")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ImportTargetError(f"cannot import {target!r}: {exc}") from exc
    return obj
