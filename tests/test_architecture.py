"""The layer contract of docs/architecture.md, enforced.

* import-linter's ``layers`` contract (``[tool.importlinter]`` in pyproject.toml): imports point down;
* every module of the package belongs to one layer;
* no import cycle between modules (within a layer either);
* the contract is not vacuous: an upward import added to a copy of the package breaks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ssl_cyto"
# Modules outside every layer by design: the package root (lazy public names) and `python -m ssl_cyto`.
ROOT_MODULES = {"ssl_cyto", "ssl_cyto.__main__"}


def _layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def _lint_imports(root: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(pythonpath)
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("ssl_cyto", exclude_type_checking_imports=True)


def test_layer_contract_holds() -> None:
    out = _lint_imports(REPO, REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_every_module_belongs_to_a_layer(graph: grimp.ImportGraph) -> None:
    layers = _layers()
    orphans = sorted(
        m
        for m in graph.modules
        if m not in ROOT_MODULES and not any(m == layer or m.startswith(layer + ".") for layer in layers)
    )
    assert not orphans, f"modules outside every layer of pyproject.toml's contract: {orphans}"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    # A package's __init__ re-exporting its children is not a cycle of jobs: leave __init__ modules out.
    for m in [m for m in graph.modules if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").exists()]:
        graph.remove_module(m)
    assert _cycles(graph) == []


def test_cycle_finder_sees_a_cycle() -> None:
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.a")
    g.add_import(importer="p.c", imported="p.a")
    assert _cycles(g) == [["p.a", "p.b"]]


@pytest.mark.slow
def test_contract_breaks_on_an_upward_import(tmp_path: Path) -> None:
    """A copy of the package with one upward import (formats -> cli) must fail the contract."""
    shutil.copytree(PACKAGE, tmp_path / "ssl_cyto", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "ssl_cyto" / "formats" / "hashing.py"
    target.write_text(target.read_text() + "\nfrom ssl_cyto.cli import exit as _upward  # noqa\n")
    out = _lint_imports(tmp_path, tmp_path)
    assert out.returncode != 0
    assert "ssl_cyto.formats.hashing -> ssl_cyto.cli.exit" in out.stdout, out.stdout
