"""Forbidden calls: does a graded class (or what it needs) use an API its target forbids?

Static and in the parent: imports and simple top-level aliases are resolved to dotted
names (``nn`` -> ``torch.nn``, ``from torch.nn import LSTMCell as L`` -> ``torch.nn.LSTMCell``,
``Cell = nn.LSTMCell``), then every attribute chain and ``getattr(x, "name")`` in the
statements the class needs is resolved and compared with the forbidden prefixes.

A name that calls an operator of a family the list forbids (``grader.spec.operators``) is a
forbidden use too, reported with the entry that forbids the family: with
``torch.nn.functional.scaled_dot_product_attention`` forbidden, ``torch._scaled_dot_product_attention_math``
and ``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu`` are; with ``torch.nn.LSTM``,
``torch.lstm`` is.

Nothing here recurses on the code's shape: attribute chains and ``getattr`` nests are
resolved by a loop, each node once (a memo), so the walk is linear in the statements' size.
"""
from __future__ import annotations

import ast

from grader.model.outcomes import ForbiddenStatic
from grader.plan.slicing import Statement
from grader.spec.operators import family_of, forbidden_families, operator_of
from grader.plan.parsing import parse as parse_python

#: Longest dotted name quoted in a message.
_SHOWN = 200


def forbidden_uses(statements: tuple[Statement, ...], forbid: tuple[str, ...]) -> list[ForbiddenStatic]:
    """Each use of a forbidden API, in source order: its cell (``label``), ``line``, the line's
    ``code``, the dotted name ``used`` and the ``forbidden`` entry it falls under."""
    if not forbid:
        return []
    trees = [(s, _parse(s)) for s in statements]
    aliases: dict[str, str] = {}
    for _, tree in trees:
        for node in tree.body if tree else ():
            _collect_aliases(node, aliases)
    families = forbidden_families(forbid)
    problems: list[tuple[int, int, ForbiddenStatic]] = []
    seen: set[tuple[str, int]] = set()
    unit_lines: dict[int, list[str]] = {}  # id(unit) -> its lines, split once per unit
    for statement, tree in trees:
        if tree is None or not tree.body or isinstance(tree.body[0], (ast.Import, ast.ImportFrom)):
            continue
        unit = statement.unit
        lines = unit_lines.get(id(unit))
        if lines is None:
            lines = unit_lines[id(unit)] = unit.source.split("\n")
        memo: dict[int, str | None] = {}
        for node in ast.walk(tree):
            dotted = _dotted(node, aliases, memo)
            if not dotted:
                continue
            hit = next((f for f in forbid if dotted == f or dotted.startswith(f + ".")), None)
            operator = operator_of(dotted) if hit is None and families else None
            if operator is not None:
                found = family_of(operator, families)
                hit = found[1] if found else None
            key = (unit.label, getattr(node, "lineno", 0))
            if hit and key not in seen:
                seen.add(key)
                line = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
                problems.append((unit.index, node.lineno, ForbiddenStatic(
                    label=unit.label, line=node.lineno, code=_shown(line), used=_shown(dotted), forbidden=hit)))
    return [found for _, _, found in sorted(problems, key=lambda p: p[:2])]


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _parse(statement: Statement) -> ast.Module | None:
    try:
        tree = parse_python(statement.source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    # Line numbers as in the unit, without parsing lineno - 1 blank lines first (that was quadratic).
    return ast.increment_lineno(tree, statement.lineno - 1)


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


def _link(node: ast.AST) -> tuple[ast.AST, str] | None:
    """(the object, the attribute name) for ``obj.name`` and ``getattr(obj, "name")``, else None."""
    if isinstance(node, ast.Attribute):
        return node.value, node.attr
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        return node.args[0], node.args[1].value
    return None


def _dotted(node: ast.AST, aliases: dict[str, str], memo: dict[int, str | None] | None = None) -> str | None:
    """'torch.nn.LSTMCell' for ``nn.LSTMCell`` (given the aliases), else None.

    Iterative: walks down the chain to its base name, then builds the names back up, storing
    each link's result in ``memo`` (keyed by ``id``, valid while the tree lives) so that a
    walk over every node of a long chain stays linear.
    """
    memo = {} if memo is None else memo
    chain: list[tuple[ast.AST, str]] = []
    while True:
        known = memo.get(id(node), memo)
        if known is not memo:
            base = known
            break
        if isinstance(node, ast.Name):
            base = aliases.get(node.id)
            break
        link = _link(node)
        if link is None:
            base = None
            break
        chain.append((node, link[1]))
        node = link[0]
    memo[id(node)] = base
    for link_node, attr in reversed(chain):
        base = f"{base}.{attr}" if base else None
        memo[id(link_node)] = base
    return base
