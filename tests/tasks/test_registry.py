"""The method registry: torch-free, every method importable, every method has a demo config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks.base import SSLTask
from ssl_cyto.tasks.registry import CONFIG_DIR, METHODS, demo_config, method_class, method_names


def test_every_method_is_a_task_with_a_demo_config() -> None:
    assert method_names() == list(METHODS) and {"simclr", "dino"} <= set(METHODS)
    for name in method_names():
        cls = method_class(name)
        assert issubclass(cls, SSLTask) and cls.method == name
        assert demo_config(name) == CONFIG_DIR / f"demo_{name}.yaml" and demo_config(name).is_file()
    with pytest.raises(InputError, match="simclr"):
        method_class("byol")
    with pytest.raises(InputError, match="unknown method"):
        demo_config("byol")


def test_registry_and_old_class_paths() -> None:
    code = (
        "import sys; import ssl_cyto.tasks.registry as r; assert 'torch' not in sys.modules, 'torch imported';"
        "import ssl_cyto.tasks as t; from ssl_cyto.tasks.simclr import SimCLR; from ssl_cyto.tasks.dino import DINO;"
        "assert t.SimCLR is SimCLR and t.DINO is DINO and t.SSLTask.__name__ == 'SSLTask'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
