"""Parse source units and keep only the top-level statements the graded names need.

Each unit (notebook cell) is parsed on its own, so a SyntaxError spoils only its cell.
Dependencies are found with ``symtable``: names a statement uses when it runs (module
level, class bodies, decorators, defaults) resolve to the last definition *before* it;
names used inside function bodies resolve to the last definition in the whole file, as
they would after running the notebook top to bottom. Loops, ``with`` blocks and bare
expressions never count as definitions, so training loops, downloads and plots are
never pulled in.
"""
from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass, field

from grader.plan.submission import SourceUnit

_NOT_DEFINITIONS = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Expr)


@dataclass(frozen=True)
class Statement:
    """One top-level statement, with where it came from and the names it defines and uses."""

    position: int
    unit: SourceUnit
    lineno: int
    source: str
    defines: frozenset[str]
    eager_uses: frozenset[str]
    deferred_uses: frozenset[str]
    star_import: bool = False
    can_define: bool = True
    is_class: bool = False


@dataclass(frozen=True)
class UnitSyntaxError:
    """A unit that could not be parsed: where, and the offending line."""

    unit: SourceUnit
    lineno: int
    offset: int
    message: str
    text: str

    def describe(self) -> str:
        """One sentence for the student: the cell, the line, the code, and what to do."""
        where = f"{self.unit.label}, line {self.lineno}"
        code = self.text.strip()
        if "FILL IN" in code:
            return f"not implemented yet: {where} is still a blank (`{code}`); replace `# FILL IN HERE` with your code"
        shown = f": `{code}`" if code else ""
        return f"SyntaxError in {where}{shown} ({self.message}); fix this line so the cell runs"


@dataclass(frozen=True)
class ParsedSource:
    """All parseable top-level statements of a submission, in order, and the units that failed."""

    statements: tuple[Statement, ...]
    syntax_errors: tuple[UnitSyntaxError, ...] = ()

    def class_names(self) -> set[str]:
        """Names of every top-level class the submission defines."""
        out = {n for s in self.statements if s.is_class for n in s.defines}
        return out | {n for e in self.syntax_errors for n in _CLASS_RE.findall(e.unit.source)}


@dataclass(frozen=True)
class Slice:
    """The statements to run for a set of graded names, and what could not be found."""

    statements: tuple[Statement, ...]
    #: graded name -> the statement defining it (absent when not found)
    definitions: dict[str, Statement] = field(default_factory=dict)
    #: graded name -> why it is missing: (a short reason for a table row, the full explanation)
    missing: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: remarks worth showing (e.g. a later broken redefinition was ignored)
    notes: tuple[str, ...] = ()


_CLASS_RE = re.compile(r"^\s*class\s+([A-Za-z_]\w*)", re.M)


def parse_units(units: tuple[SourceUnit, ...] | list[SourceUnit]) -> ParsedSource:
    """Parse every unit separately into top-level statements."""
    statements: list[Statement] = []
    errors: list[UnitSyntaxError] = []
    for unit in units:
        try:
            tree = ast.parse(unit.source)
        except SyntaxError as e:
            lines = unit.source.split("\n")
            lineno = e.lineno or 1
            text = lines[lineno - 1] if 0 < lineno <= len(lines) else (e.text or "")
            errors.append(UnitSyntaxError(unit, lineno, e.offset or 0, e.msg, text))
            continue
        except ValueError as e:  # e.g. null bytes
            errors.append(UnitSyntaxError(unit, 1, 0, str(e), ""))
            continue
        lines = unit.source.split("\n")
        for node in tree.body:
            statements.append(_statement(len(statements), unit, node, lines))
    return ParsedSource(tuple(statements), tuple(errors))


def _statement(position: int, unit: SourceUnit, node: ast.stmt, lines: list[str]) -> Statement:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno or node.lineno
    source = "\n".join(lines[start - 1:end])
    defines, eager, deferred = _names(source)
    star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    return Statement(position, unit, start, source, frozenset(defines), frozenset(eager),
                     frozenset(deferred), star, not isinstance(node, _NOT_DEFINITIONS),
                     isinstance(node, ast.ClassDef))


def _names(source: str) -> tuple[set[str], set[str], set[str]]:
    """(defined, used when run, used later by function bodies) for one top-level statement."""
    try:
        top = symtable.symtable(source, "<unit>", "exec")
    except SyntaxError:  # e.g. a statement that only parses in context; be conservative
        return set(), set(), set()
    defines, eager, deferred = set(), set(), set()
    for sym in top.get_symbols():
        if sym.is_assigned() or sym.is_imported():
            defines.add(sym.get_name())
        if sym.is_referenced():
            eager.add(sym.get_name())
    for child in top.get_children():
        _collect(child, eager, deferred, in_function=False)
    return defines, eager, deferred


def _collect(table: symtable.SymbolTable, eager: set[str], deferred: set[str], in_function: bool) -> None:
    is_function = in_function or table.get_type() in ("function", "lambda")
    for sym in table.get_symbols():
        if sym.is_global() and (sym.is_referenced() or sym.is_assigned()):
            (deferred if is_function else eager).add(sym.get_name())
    for child in table.get_children():
        _collect(child, eager, deferred, is_function)


def slice_for(parsed: ParsedSource, names: list[str] | tuple[str, ...]) -> Slice:
    """Select the statements needed to define ``names`` (and what those need, transitively)."""
    statements = parsed.statements
    end = len(statements)
    selected: set[int] = set()
    definitions: dict[str, Statement] = {}
    missing: dict[str, str] = {}
    notes: list[str] = []

    def last_def(name: str, before: int) -> Statement | None:
        for s in reversed(statements[:before]):
            if s.can_define and name in s.defines:
                return s
        return None

    work: list[Statement] = []
    for name in names:
        s = last_def(name, end)
        if s is None:
            missing[name] = _why_missing(parsed, name)
            continue
        definitions[name] = s
        work.append(s)
        broken = _broken_redefinition(parsed, name, s)
        if broken:
            notes.append(f"{broken.unit.label} also defines {name} but has a syntax error; "
                         f"graded the definition in {s.unit.label}. {broken.describe()}")
    while work:
        s = work.pop()
        if s.position in selected:
            continue
        selected.add(s.position)
        for name in s.eager_uses:
            d = last_def(name, s.position)
            if d is not None and d.position not in selected:
                work.append(d)
        for name in s.deferred_uses:
            d = last_def(name, end)
            if d is not None and d.position not in selected:
                work.append(d)
    if selected:
        last = max(selected)
        for s in statements[:last]:
            if s.star_import and s.position not in selected:
                selected.add(s.position)
    chosen = tuple(s for s in statements if s.position in selected)
    return Slice(chosen, definitions, missing, tuple(notes))


def _why_missing(parsed: ParsedSource, name: str) -> tuple[str, str]:
    for err in reversed(parsed.syntax_errors):
        if re.search(rf"^\s*class\s+{re.escape(name)}\b", err.unit.source, re.M):
            where = f"{err.unit.label}, line {err.lineno}"
            short = (f"not implemented yet ({where} is a blank)" if "FILL IN" in err.text
                     else f"{name} has a SyntaxError ({where})")
            return short, f"{name}: {err.describe()}"
    return (f"{name} is not defined",
            f"{name} is not defined in the submission; define `class {name}(nn.Module)` at the top level "
            "of a cell, with exactly this name")


def _broken_redefinition(parsed: ParsedSource, name: str, s: Statement) -> UnitSyntaxError | None:
    for err in parsed.syntax_errors:
        if err.unit.index > s.unit.index and re.search(rf"^\s*class\s+{re.escape(name)}\b", err.unit.source, re.M):
            return err
    return None
