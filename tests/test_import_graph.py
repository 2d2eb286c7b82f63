"""The runtime package's import graph has no cycle: no module of ``streamdet/`` imports (at any level, inside
functions and ``TYPE_CHECKING`` blocks included) a module that imports it back, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import streamdet

ROOT = Path(streamdet.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["streamdet", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: the streamdet.* modules it imports}`` over every file of the installed ``streamdet`` folder."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import streamdet.x.y` of an attribute: its module
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("streamdet"):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_runtime_has_no_import_cycle() -> None:
    graph = {name: edges for name, edges in import_graph().items()
             if not name.startswith(("streamdet.models", "streamdet.train", "streamdet.export"))}
    # A package's __init__ re-exporting its own submodules is not counted: importing a submodule runs the
    # package's __init__ first anyway, so only the submodules' imports can make a cycle.
    cycle = find_cycle({name: {e for e in edges if name not in _ancestors(e)} for name, edges in graph.items()})
    assert cycle is None, " -> ".join(cycle)
    assert "streamdet.detector" in graph and "streamdet.stream" in graph["streamdet.detector"]


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
