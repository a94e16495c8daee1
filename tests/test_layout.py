"""The package's layout keeps its promises: no import cycle among rag's modules, and light modules stay light.

The import graph is read from the source with `ast` (imports at module level and inside functions alike: a lazy
import hides a cycle from Python, not from a reader), so the test needs no model and no index.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "rag"
# Cycles owned by another branch: each edge is removed by that branch; the lead deletes the entry at merge.
HEAVY = ("faiss", "torch", "sentence_transformers", "llama_cpp")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """The rag modules one import statement names (a `from X import name` naming a submodule counts as that)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = set()
    for alias in node.names:
        if f"{target}.{alias.name}" in known:
            found.add(f"{target}.{alias.name}")
        elif target in known:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the rag modules it imports, anywhere in its source."""
    known = _modules()
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, module, is_package, known)
        graph[module] = {m for m in edges if m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found, key=len, reverse=True)


def _path_within(graph: dict[str, set[str]], component: list[str]) -> str:
    """One cycle through the component's first module, written `a -> b -> a`, for the failure message."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return " -> ".join([*paths[node], start])
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                frontier.append(successor)
    return " , ".join(component)


def test_the_cycle_finder_finds_a_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _path_within(graph, ["a", "b", "c"]) == "a -> b -> c -> a"
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_reads_relative_and_lazy_imports():
    graph = import_graph()
    assert "rag.load.loader" in graph["rag.load"]  # `from .loader import ...` in a package's __init__
    assert "rag.load.office" in graph["rag.load.loader"]  # `from . import office`
    assert "rag.errors" in graph["rag.load.mail"]  # `from ..errors import ...`


def test_no_import_cycle_in_rag():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles in rag/:\n" + "\n".join(_path_within(graph, c) for c in found)


def _imported_modules(statement: str) -> list[str]:
    """The heavy modules in sys.modules after `statement`, in a fresh interpreter."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_light_modules_import_no_model_or_index_library():
    """Records, the store interface and what `rag keys` runs (rag.auth) load no FAISS, torch or llama.cpp."""
    for module in ("rag.records", "rag.auth", "rag.store", "rag.load"):
        assert _imported_modules(f"import {module}") == [], module


def test_the_probe_sees_a_heavy_import():
    assert _imported_modules("import faiss") == ["faiss"]
