"""The Python face of ssl_cyto (issue 14, item 10).

* the README's "From Python" example (scan -> pack -> embed -> index -> query on generated cells)
  runs as written (:data:`README_EXAMPLE` is the README's code block, character for character);
* every submodule imports, and every package-level export (``ssl_cyto.__all__`` and each
  sub-package's ``__all__``) resolves, without a name that clashes with a module.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import ssl_cyto

REPO = Path(__file__).resolve().parents[1]

README_EXAMPLE = """\
import ssl_cyto

ssl_cyto.synthesize("cells", layout="folder", per_class=6, seed=0)  # generated cells
catalog = ssl_cyto.scan([("folder", "cells")])                        # one row per cell
ssl_cyto.pack(catalog, "shards", shard_size=16)                        # shards + index.json
ssl_cyto.embed("tiny_cnn", "shards", "emb")                            # random weights: a floor
ssl_cyto.build_index("emb")                                            # emb/index.faiss
hits = ssl_cyto.query(["cells/monocyte/monocyte_0001.png"], "emb", k=5)
for n in hits[0]["neighbours"]:
    print(n["rank"], n["label"], f"{n['similarity']:.3f}", n["cell_id"])
"""

# sub-packages whose __init__ exports names (loaded on first use, PEP 562)
PACKAGES = (
    "ssl_cyto",
    "ssl_cyto.data",
    "ssl_cyto.models",
    "ssl_cyto.embedding",
    "ssl_cyto.retrieval",
    "ssl_cyto.evaluation",
)


def test_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(README_EXAMPLE, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    rank, label, sim, cell_id = lines[0].split(" ")
    assert (
        rank == "1"
        and cell_id == "folder:cells/monocyte/monocyte_0001.png"
        and float(sim) == pytest.approx(1.0)
    )
    assert (tmp_path / "emb" / "index.faiss").is_file()


def test_readme_shows_the_example() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## From Python" in readme
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert README_EXAMPLE in blocks, (
        "the README's 'From Python' block must equal tests/test_python_api.py:README_EXAMPLE"
    )


def _all_modules() -> list[str]:
    """Every module of the package but ``__main__`` (which runs the command line when imported)."""
    names = (m.name for m in pkgutil.walk_packages(ssl_cyto.__path__, prefix="ssl_cyto."))
    return sorted(n for n in names if not n.endswith(".__main__"))


def test_every_submodule_imports() -> None:
    failed = {}
    for name in _all_modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every failure is listed
            failed[name] = f"{type(exc).__name__}: {exc}"
    assert not failed, failed


@pytest.mark.parametrize("package", PACKAGES)
def test_package_exports_resolve_without_clashing_with_modules(package: str) -> None:
    pkg = importlib.import_module(package)
    names = list(getattr(pkg, "__all__", []))
    assert names, f"{package} exports nothing"
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    for name in names:
        assert name not in submodules, f"{package}.{name} is both an export and a module"
        obj = getattr(pkg, name)
        assert not isinstance(obj, types.ModuleType), f"{package}.{name} resolves to a module"
        assert name in dir(pkg)
    missing = "no_such_name"
    with pytest.raises(AttributeError):
        getattr(pkg, missing)


def test_documented_imports() -> None:
    from ssl_cyto.data import CellDataModule, pack, scan, synthesize, verify
    from ssl_cyto.retrieval import query

    assert CellDataModule.__name__ == "CellDataModule"
    assert (scan, pack, verify, synthesize) == (
        ssl_cyto.scan,
        ssl_cyto.pack,
        ssl_cyto.verify,
        ssl_cyto.synthesize,
    )
    assert query is ssl_cyto.query
    assert isinstance(importlib.import_module("ssl_cyto.retrieval.search"), types.ModuleType)
