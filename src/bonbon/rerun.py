"""What makes Snakemake rerun a job: the result-affecting settings of each rule, in one spelling, and
the version of the package code a rule's script runs.

Snakemake (9) reruns a job whose params differ from those recorded with its outputs, comparing their
``repr``; params computed by a function that takes ``input``, ``output``, ``threads`` or
``resources`` are left out of that comparison. The rules therefore pass two kinds of params: the
settings that change results, made :func:`canonical` (sorted keys; the config's numbers already have
one type, see :func:`bonbon.config.coerce_config`), and the settings that only change how a job runs
(:data:`RUNTIME_KEYS`, marked ``x-runtime`` in the schema), through a function of ``threads``.
``config/README.md`` lists the latter.
Package code is not tracked by Snakemake at all (only a rule's script, by its mtime): each rule has
a ``code`` param, :func:`code_version` of its script.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Any

from bonbon.config import marked_keys, training_keys

# Config keys that change how a job runs but not what it computes (beyond float rounding where the
# order of sums or the device changes): changing them reruns nothing. The schema marks them (x-runtime);
# a training block's are named once, as training.*: sft.training and runs[].training take the same
RUNTIME_KEYS = tuple(
    key for key in marked_keys("x-runtime") if not key.startswith(("sft.training.", "runs[].training."))
)
# the training keys among them, in every training block (training, sft.training, runs[i].training)
RUNTIME_TRAINING_KEYS = training_keys("x-runtime")


# modules of the package (names below it) that change how a job runs, never what it computes: no rule
# reruns when they change
RESULT_FREE_MODULES = frozenset({"warm"})


def canonical(value: Any) -> Any:
    """``value`` in one spelling: mappings with sorted keys (at every depth), tuples as lists.

    Snakemake compares params by ``repr``, in which a dict shows its insertion order: without this,
    reordering keys in a config file, or re-dumping it with a YAML tool, would rerun every job.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 and 0.0 are one value
    return value


def result_training(block: dict[str, Any]) -> dict[str, Any]:
    """A training block without the keys that change no result."""
    return canonical({k: v for k, v in block.items() if k not in RUNTIME_TRAINING_KEYS})


def runtime_training(block: dict[str, Any]) -> dict[str, Any]:
    """The keys of a training block that change no result."""
    return {k: v for k, v in block.items() if k in RUNTIME_TRAINING_KEYS}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _package_imports(tree: ast.AST, package: str) -> set[str]:
    """The modules of ``package`` that ``tree`` imports, anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.add(node.module)
            # `from bonbon import plots` imports a module; `from bonbon.io import x` a name in one
            found.update(f"{node.module}.{a.name}" for a in node.names)
    # importing a.b.c runs a/__init__.py and a/b/__init__.py too
    return found | {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}


@functools.cache
def _analysed(source: str, package: str) -> tuple[str, frozenset[str]]:
    """One file's syntax tree without docstrings (as text) and the modules of ``package`` it imports.

    Keyed by the file's text, so a file is parsed once per process however many rules' scripts import
    it (the workflow computes every rule's code version when it starts), and an edited file anew."""
    tree = ast.parse(source)
    imports = frozenset(_package_imports(tree, package))
    return ast.dump(_without_docstrings(tree)), imports


def package_modules(script: str | Path, source_root: str | Path, package: str = "bonbon") -> dict[str, Path]:
    """Every module of ``package`` that ``script`` runs, transitively (``module -> its file``): the
    script's own imports, those of the modules they name, and the packages' ``__init__`` files. New
    modules (``bonbon.frontier``, ``bonbon.exact``, ``bonbon.chat``, ``bonbon.sampling``,
    ``bonbon.models``, ``bonbon.tables``, ``bonbon.jobs``, ...) are found by their imports, not by a list."""
    root = Path(source_root)
    found: dict[str, Path] = {}
    pending = [Path(script)]
    while pending:
        _, imports = _analysed(pending.pop().read_text(), package)
        for module in imports:
            parts = module.split(".")
            if module.removeprefix(f"{package}.") in RESULT_FREE_MODULES:
                continue
            for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
                if candidate.is_file() and module not in found:
                    found[module] = candidate
                    pending.append(candidate)
    return found


def code_version(script: str | Path, source_root: str | Path, package: str = "bonbon") -> str:
    """A hash of the code a workflow script runs: the script and every module of ``package`` it
    imports, transitively, as syntax trees without docstrings (comments, formatting and docstrings
    change no result). ``source_root`` is the directory that holds the package (``src``)."""
    trees = {"<script>": Path(script), **package_modules(script, source_root, package)}
    seen = {name: _analysed(path.read_text(), package)[0] for name, path in trees.items()}
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(f"{name}\0{seen[name]}\0".encode())
    return digest.hexdigest()[:16]
