"""Forbidden calls: does a graded class (or what it needs) use an API its target forbids?

Static and in the parent: imports and simple top-level aliases are resolved to dotted
names (``nn`` -> ``torch.nn``, ``from torch.nn import LSTMCell as L`` -> ``torch.nn.LSTMCell``,
``Cell = nn.LSTMCell``), then every attribute chain and ``getattr(x, "name")`` in the
statements the class needs is resolved and compared with the forbidden prefixes.
"""
from __future__ import annotations

import ast

from grader.plan.slicing import Statement


def forbidden_uses(statements: tuple[Statement, ...], forbid: tuple[str, ...]) -> list[str]:
    """One message per use of a forbidden API: where, the code, and which API."""
    if not forbid:
        return []
    trees = [(s, _parse(s)) for s in statements]
    aliases: dict[str, str] = {}
    for _, tree in trees:
        for node in tree.body if tree else ():
            _collect_aliases(node, aliases)
    problems: list[tuple[int, int, str]] = []
    seen: set[tuple[str, int]] = set()
    for statement, tree in trees:
        if tree is None or isinstance(tree.body[0], (ast.Import, ast.ImportFrom)):
            continue
        lines = statement.unit.source.split("\n")
        for node in ast.walk(tree):
            dotted = _dotted(node, aliases)
            if not dotted:
                continue
            hit = next((f for f in forbid if dotted == f or dotted.startswith(f + ".")), None)
            key = (statement.unit.label, getattr(node, "lineno", 0))
            if hit and key not in seen:
                seen.add(key)
                line = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
                problems.append((statement.unit.index, node.lineno,
                                 f"{statement.unit.label}, line {node.lineno}: `{line}` uses {dotted}, which this "
                                 f"exercise forbids ({hit}); write the computation yourself"))
    return [message for _, _, message in sorted(problems)]


def _parse(statement: Statement) -> ast.Module | None:
    try:
        return ast.parse("\n" * (statement.lineno - 1) + statement.source)
    except SyntaxError:
        return None


def _collect_aliases(node: ast.stmt, aliases: dict[str, str]) -> None:
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.asname:
                aliases[a.asname] = a.name
            else:
                aliases[a.name.split(".")[0]] = a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for a in node.names:
            if a.name != "*":
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        dotted = _dotted(node.value, aliases)
        if dotted:
            aliases[node.targets[0].id] = dotted


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """'torch.nn.LSTMCell' for ``nn.LSTMCell`` (given the aliases), else None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        base = _dotted(node.args[0], aliases)
        return f"{base}.{node.args[1].value}" if base else None
    return None
