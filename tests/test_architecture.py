"""The package's shape: no bonbon module imports one that imports it back (imports inside functions
count: a lazy import hides a cycle from Python, not from the reader)."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "src" / "bonbon"


def imported_modules(source: str) -> set[str]:
    """The bonbon modules a module's source imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bonbon":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bonbon.")}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle of ``graph`` (module -> modules it imports), each as a closed path."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for other in sorted(graph.get(module, ())):
            if other in path:
                found.append([*path[path.index(other):], other])
            elif other not in done:
                visit(other, [*path, other])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"generate": {"vllm_backend"}, "vllm_backend": {"generate"}}) == [
        ["generate", "vllm_backend", "generate"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert imported_modules("import bonbon.tables\ndef f():\n    from bonbon.models import load_policy\n") == {
        "tables", "models"}


def test_no_import_cycle_in_the_package():
    graph = {p.stem: imported_modules(p.read_text()) - {p.stem} for p in PACKAGE.glob("*.py")}
    assert len(graph) > 20 and "generate" not in graph["vllm_backend"]  # the cycle the backend once had
    assert cycles(graph) == []
