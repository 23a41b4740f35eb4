"""The package's shape: no bonbon module imports one that imports it back (imports inside functions
count: a lazy import hides a cycle from Python, not from the reader)."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "src" / "bonbon"


def imported_modules(source: str) -> set[str]:
    """The bonbon modules a module's source imports, anywhere in it, as dotted names below ``bonbon``
    (``train.loop``; a package's name stands for its ``__init__``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bonbon":
            inside = node.module.partition(".")[2]
            found |= {inside} if inside else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.partition(".")[2] for a in node.names if a.name.startswith("bonbon.")}
    return found


def module_name(path) -> str:
    """``train/loop.py`` -> ``train.loop``; ``train/__init__.py`` -> ``train``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
    assert imported_modules("import bonbon.tables\ndef f():\n"
                            "    from bonbon.models import load_policy\n") == {"tables", "models"}
    assert imported_modules("from bonbon.train.lora import wrap_lora\nfrom bonbon import train\n") == {
        "train.lora", "train"}


def test_no_import_cycle_in_the_package():
    graph = {module_name(p): imported_modules(p.read_text()) - {module_name(p)}
             for p in PACKAGE.rglob("*.py")}
    graph.pop("", None)  # bonbon/__init__.py
    assert len(graph) > 20 and "generate" not in graph["vllm_backend"]  # the cycle the backend once had
    assert "train.loop" in graph["train"] and "train.options" in graph["train.loop"]  # subpackages are seen
    assert cycles(graph) == []
