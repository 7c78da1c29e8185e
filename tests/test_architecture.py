"""The package's layers: imports between folders run one way, so the arrows read like the data flow.

From the bottom: the shared ground (errors, exit codes, config, memo), model (the result model,
the facts stages return, and their words), spec (the case files' model), plan, execute, judge,
course (which course, the reference's outputs), the pipeline, report (the views of a report: rich,
JSON, Gradescope, JUnit, CSV, HTML, the audiences), batch, and the front ends (cli, local, authoring).
A module may import its own layer and those below it, never one above. The worker, which
runs in the sandbox, imports only the standard library, torch, two modules of its own layer and
the pure data of the forbidden operator families (``grader.spec.operators``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grader"
LAYERS = [
    {"errors", "exitcodes", "config", "memo"},
    {"model"},
    {"spec"},
    {"plan"},
    {"execute"},
    {"judge"},
    {"course"},
    {"pipeline"},
    {"report"},
    {"batch"},
    {"authoring", "local", "cli", "pytest_plugin", "__init__", "__main__"},
]


def _layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return [name for name in found if name.split(".")[0] == "grader"]


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = _layer(_part(path))
    for name in _imports(path):
        parts = name.split(".")
        if len(parts) == 1:
            continue  # `import grader` (the lazy public API)
        target = _layer(parts[1])
        assert target <= own, f"{path.relative_to(PACKAGE)} imports {name}, a layer above it"


def test_every_module_has_a_layer():
    parts = {_part(p) for p in MODULES}
    assert parts <= set().union(*LAYERS), parts - set().union(*LAYERS)


def test_the_worker_imports_nothing_of_the_parent():
    allowed = {"grader.execute.protocol", "grader.execute.guard"}
    assert set(_imports(PACKAGE / "execute" / "worker.py")) <= allowed
    # the wire's records include the facts' ErrorInfo (one definition), from a module of plain data
    assert _imports(PACKAGE / "execute" / "protocol.py") == ["grader.model.outcomes"]
    assert _imports(PACKAGE / "model" / "outcomes.py") == []


def _parses_python(path: Path) -> bool:
    """Does the module call ``ast.parse``, or ``compile`` with ``ast.PyCF_ONLY_AST``?"""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("parse", "PyCF_ONLY_AST") \
                and isinstance(node.value, ast.Name) and node.value.id == "ast":
            return True
    return False


def test_the_grader_parses_python_in_one_place():
    """CPython 3.11 fails two parses at once in one process (see grader/plan/parsing.py): every parse in
    the grader's process takes its lock. The worker is one thread in a process of its own."""
    allowed = {PACKAGE / "plan" / "parsing.py", PACKAGE / "execute" / "worker.py"}
    assert [str(p.relative_to(PACKAGE)) for p in MODULES if p not in allowed and _parses_python(p)] == []
