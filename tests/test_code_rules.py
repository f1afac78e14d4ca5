"""Code rules of docs/architecture.md, checked on the AST of every module of ssl_cyto/.

* no module over 450 lines (one job per file);
* no function over 100 lines in the packages of :data:`SHORT_FUNCTION_PACKAGES` (others follow as the
  issues that rewrite them land);
* no class defined inside a function (classes are found, grepped and typed where they live);
* no assignment into ``globals()`` and none to ``__qualname__`` (no classes published at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssl_cyto"
MAX_LINES = 450
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 100
#: Packages (path prefixes under ssl_cyto/) held to MAX_FUNCTION_LINES (add yours when your issue rewrites it).
SHORT_FUNCTION_PACKAGES = (
    "models/",
    "embedding/",
    "retrieval/",
    "serve/",
    "evaluation/",
    "training/",
    "data/loading/",
)


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _violations(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ClassDef):
                    found.append(f"line {inner.lineno}: class {inner.name} defined inside {node.name}()")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and t.attr == "__qualname__":
                found.append(f"line {t.lineno}: assignment to __qualname__")
            if isinstance(t, ast.Subscript) and _is_globals_call(t.value):
                found.append(f"line {t.lineno}: assignment into globals()")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("update", "setdefault", "__setitem__")
            and _is_globals_call(node.func.value)
        ):
            found.append(f"line {node.lineno}: globals().{node.func.attr}(...)")
    return found


def _is_globals_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "globals"


def test_package_has_modules() -> None:
    assert len(MODULES) > 20


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_length(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_rel(path)} has {n} lines (at most {MAX_LINES}: split it by job)"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_runtime_classes(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert _violations(tree) == []


def _long_functions(tree: ast.AST) -> list[str]:
    return [
        f"{node.name}() at line {node.lineno} has {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


@pytest.mark.parametrize(
    "path",
    [
        m
        for m in MODULES
        if m.relative_to(PACKAGE).as_posix().startswith(SHORT_FUNCTION_PACKAGES)
    ],
    ids=_rel,
)
def test_function_length(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert _long_functions(tree) == [], f"{_rel(path)}: split these by job (at most {MAX_FUNCTION_LINES} lines)"


def test_function_length_rule_can_fail() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    assert len(_long_functions(ast.parse(f"def long():\n{body}\n"))) == 1


def test_rules_catch_the_old_patterns() -> None:
    bad = ast.parse(
        "def build():\n"
        "    class A: pass\n"
        "    A.__qualname__ = 'A'\n"
        "    globals()['A'] = A\n"
        "    globals().update({'B': A})\n"
    )
    assert len(_violations(bad)) == 4
