"""The SSL methods: a torch-free table of method name -> ``"module:Class"``.

A new method is one task file (a :class:`ssl_cyto.tasks.base.SSLTask` subclass, or a
:class:`ssl_cyto.tasks.momentum.MomentumTask` one for an EMA teacher), one line here and its configs
(``ssl_cyto/configs/demo_<name>.yaml`` for ``ssl-cyto demo --method <name>``). ``ssl-cyto demo``
and its help take their method list from :func:`method_names`; nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from ssl_cyto.formats.errors import InputError, MissingInputError
from ssl_cyto.formats.imports import import_object

METHODS: dict[str, str] = {
    "simclr": "ssl_cyto.tasks.simclr:SimCLR",
    "dino": "ssl_cyto.tasks.dino:DINO",
    "dinov2": "ssl_cyto.tasks.dinov2:DINOv2",
}

#: The configs shipped with the package (``ssl_cyto/configs/*.yaml``).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    return list(METHODS)


def _check(name: str) -> str:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return name


def method_class(name: str) -> type:
    """The task class of a method (imports it, and with it torch).

    Raises:
        InputError: an unknown method name.
    """
    cls: type = import_object(METHODS[_check(name)])
    return cls


def demo_config(name: str) -> Path:
    """``ssl_cyto/configs/demo_<name>.yaml``: the config ``ssl-cyto demo --method <name>`` trains with.

    Raises:
        InputError: an unknown method name.
        MissingInputError: the method has no demo config in the installed package.
    """
    path = CONFIG_DIR / f"demo_{_check(name)}.yaml"
    if not path.is_file():
        raise MissingInputError(
            f"method {name!r} has no demo config: {path} is missing (add demo_{name}.yaml)"
        )
    return path
