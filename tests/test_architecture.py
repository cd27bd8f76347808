"""The package's shape, held to architecture.toml: floors, no cycles, no private imports, sizes.

Read from the source with ``ast`` (nothing is imported). Each rule is a function returning its
violations; the tests run it on the package, and on a planted violation to show it can fail.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "riskmodel"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100
FLOORS = tomllib.loads((REPO / "architecture.toml").read_text(encoding="utf-8"))["floor"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {_module_name(p): (p.name == "__init__.py", p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def floor_of(module: str) -> int:
    """The floor of a module: that of the longest declared prefix (KeyError when none)."""
    best, level = -1, -1
    for i, floor in enumerate(FLOORS):
        for prefix in floor["modules"]:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level < 0:
        raise KeyError(module)
    return level


def imports(module: str, sources: Mapping[str, tuple[bool, str]]) -> Iterator[tuple[str, str | None, int]]:
    """(imported riskmodel module, imported name or None, line) for every import, at any depth."""
    is_package, text = sources[module]
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("riskmodel"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parts = base.split(".")
                source = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            if not source.startswith("riskmodel"):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield (sub, None, node.lineno) if sub in sources else (source, alias.name, node.lineno)


def edges(sources: Mapping[str, tuple[bool, str]]) -> dict[str, list[str]]:
    return {m: sorted({t for t, _, _ in imports(m, sources) if t in sources}) for m in sources}


def undeclared(sources: Mapping[str, tuple[bool, str]]) -> list[str]:
    out = []
    for m in sources:
        try:
            floor_of(m)
        except KeyError:
            out.append(m)
    return out


def upward(graph: Mapping[str, list[str]]) -> list[str]:
    return [
        f"{m} ({FLOORS[floor_of(m)]['name']}) imports {t} ({FLOORS[floor_of(t)]['name']})"
        for m, targets in graph.items()
        for t in targets
        if floor_of(t) > floor_of(m)
    ]


def cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def private_imports(sources: Mapping[str, tuple[bool, str]]) -> list[str]:
    found = []
    for m in sources:
        for target, name, line in imports(m, sources):
            if name is not None and name.startswith("_") and not name.startswith("__"):
                found.append(f"{m}:{line} imports {name} from {target}")
            if any(p.startswith("_") and not p.startswith("__") for p in target.split(".")):
                owner = target.rpartition(".")[0]
                if not (m == owner or m.startswith(owner + ".")):
                    found.append(f"{m}:{line} imports the private module {target}")
    return found


def oversized(sources: Mapping[str, tuple[bool, str]]) -> list[str]:
    out = []
    for m, (_, text) in sources.items():
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{m}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{m}.{node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return out


def test_every_module_stands_on_a_declared_floor() -> None:
    assert not undeclared(SOURCES), "declare these modules' floor in architecture.toml"


def test_no_module_imports_from_a_higher_floor() -> None:
    assert not upward(edges(SOURCES))


def test_the_import_graph_has_no_cycle() -> None:
    assert not cycles(edges(SOURCES))


def test_no_private_name_is_imported_from_another_module() -> None:
    assert not private_imports(SOURCES)


def test_modules_and_functions_stay_readable_in_size() -> None:
    assert not oversized(SOURCES)


PLANTED = {
    "upward": "from riskmodel.cli import app\n",
    "private name": "from riskmodel.cohort.load import _max_file_mb\n",
    "private module": "from riskmodel.cohort._cells import Reporter\n",
    "cycle": "import riskmodel.metrics\n",
    "size": "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES,
}


@pytest.mark.parametrize("rule", list(PLANTED))
def test_each_rule_fails_on_a_planted_violation(rule: str) -> None:
    # a new module on the statistics floor, imported by riskmodel.metrics (so importing it back is a cycle)
    sources = {**SOURCES, "riskmodel.stats.planted": (False, PLANTED[rule])}
    is_package, text = sources["riskmodel.metrics"]
    sources["riskmodel.metrics"] = (is_package, text + "\nimport riskmodel.stats.planted\n")
    check = {
        "upward": lambda: upward(edges(sources)),
        "private name": lambda: private_imports(sources),
        "private module": lambda: private_imports(sources),
        "cycle": lambda: cycles(edges(sources)),
        "size": lambda: oversized(sources),
    }[rule]
    assert any("planted" in str(v) for v in check())
