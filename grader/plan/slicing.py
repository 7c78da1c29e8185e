"""Parse source units and keep only the top-level statements the graded names need.

Each unit (notebook cell) is parsed on its own, so a SyntaxError spoils only its cell.
Dependencies are found with ``symtable``: names a statement uses when it runs (module
level, class bodies, decorators, defaults) resolve to the last definition *before* it;
names used inside function bodies resolve to the last definition in the whole file, as
they would after running the notebook top to bottom. Loops, ``with`` blocks and bare
expressions never count as definitions, so training loops, downloads and plots are
never pulled in.

Everything here is linear (or n log n) in the size of the code, and nothing recurses on
the shape of the student's code: a cell nested deeper than ``MAX_AST_DEPTH`` (or too deep
for CPython's own parser) fails on its own, like a SyntaxError, with a sentence that says
where and what to do. The code's size is bounded before it gets here
(``grader.plan.submission.MAX_CODE_BYTES``).
"""
from __future__ import annotations

import ast
import bisect
import dataclasses
import io
import itertools
import re
import symtable
import tokenize
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from grader.plan.submission import SourceUnit
from grader.model.messages import unit_error_text
from grader.model.outcomes import UnitError
from grader.plan.parsing import parse as parse_python

#: The template's blank, found in comments: where it still marks an empty slot, the code is not
#: implemented yet, whether or not it parses (see ``find_blanks``).
BLANK_MARKER = "FILL IN"

_NOT_DEFINITIONS = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Expr)

MAX_AST_DEPTH = 500
"""The deepest nesting of syntax (AST nodes, from a top-level statement down) the grader reads.

CPython itself gives up between about 2,000 and 3,000 levels (``ast.parse``, ``symtable``
and ``compile`` all raise RecursionError or MemoryError, earlier the deeper the caller's own
stack), so 500 leaves a wide margin for the grader and its worker. Course code nests under
30 levels; a chain of 100 ``elif`` or 200 ``+`` terms is still far below the cap.
"""

#: Longest piece of code quoted in a message.
_SHOWN = 200


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
    #: the first unfilled blank of the template in this statement (see ``find_blanks``)
    blank: Blank | None = None
    #: a class's own ``forward``: its parameters after ``self`` (None: not a class, or no ``forward``)
    forward_args: tuple[str, ...] | None = None

    def blank_fact(self) -> UnitError:
        """The blank, as ``UnitSyntaxError.fact()`` gives a blank that does not parse (``what`` "blank")."""
        assert self.blank is not None
        return UnitError("blank", self.unit.label, self.blank.lineno, _shown(self.blank.code))


@dataclass(frozen=True)
class Blank:
    """A blank of the template left unfilled in code that parses: its line in the unit, and the code."""

    lineno: int
    code: str


def _shown(code: str) -> str:
    code = code.strip()
    return code if len(code) <= _SHOWN else code[:_SHOWN] + "..."


@dataclass(frozen=True)
class UnitSyntaxError:
    """A unit that could not be parsed: where, and the offending line."""

    unit: SourceUnit
    lineno: int
    offset: int
    message: str
    text: str
    #: what kind of failure: "syntax_error" here, "too_deep" for ``UnitTooDeep``
    kind: ClassVar[str] = "syntax_error"

    def fact(self) -> UnitError:
        """What went wrong, as data (``grader.model.messages`` words it)."""
        what = "blank" if self.kind == "syntax_error" and BLANK_MARKER in self.text else self.kind
        return UnitError(what, self.unit.label, self.lineno, _shown(self.text), self.message)

    def describe(self) -> str:
        """One sentence for the student: the cell, the line, the code, and what to do."""
        return unit_error_text(self.fact())


@dataclass(frozen=True)
class UnitTooDeep(UnitSyntaxError):
    """A unit the grader does not read because its code nests too deeply (see ``MAX_AST_DEPTH``).

    ``depth`` is how deep it nests, or 0 when CPython's parser gave up before saying.
    """

    depth: int = 0
    limit: int = MAX_AST_DEPTH
    kind: ClassVar[str] = "too_deep"

    def fact(self) -> UnitError:
        return dataclasses.replace(super().fact(), depth=self.depth, limit=self.limit)


@dataclass(frozen=True)
class ParsedSource:
    """All parseable top-level statements of a submission, in order, and the units that failed."""

    statements: tuple[Statement, ...]
    syntax_errors: tuple[UnitSyntaxError, ...] = ()

    def class_names(self) -> set[str]:
        """Names of every top-level class the submission defines."""
        out = {n for s in self.statements if s.is_class for n in s.defines}
        return out | {n for e in self.syntax_errors for n in _CLASS_RE.findall(e.unit.source)}

    @cached_property
    def _definers(self) -> dict[str, list[int]]:
        """name -> indexes (ascending) in ``statements`` of those that can define it. Built once."""
        out: dict[str, list[int]] = {}
        for i, s in enumerate(self.statements):
            if s.can_define:
                for name in s.defines:
                    out.setdefault(name, []).append(i)
        return out

    @cached_property
    def _star_imports(self) -> list[int]:
        return [i for i, s in enumerate(self.statements) if s.star_import]

    def defining_error(self, name: str) -> UnitSyntaxError | None:
        """The last unit that failed to parse and defines ``class name`` (linear: no ``\\s*`` across lines)."""
        pattern = _class_re(name)
        return next((e for e in reversed(self.syntax_errors) if pattern.search(e.unit.source)), None)

    def last_definition(self, name: str, before: int) -> Statement | None:
        """The last of ``statements[:before]`` that can define ``name``, by bisection (O(log n))."""
        indexes = self._definers.get(name)
        if not indexes:
            return None
        i = bisect.bisect_left(indexes, before)
        return self.statements[indexes[i - 1]] if i else None


@dataclass(frozen=True)
class Slice:
    """The statements to run for a set of graded names, and what could not be found."""

    statements: tuple[Statement, ...]
    #: graded name -> the statement defining it (absent when not found)
    definitions: dict[str, Statement] = field(default_factory=dict)
    #: graded names no statement defines (``ParsedSource.defining_error`` may say why)
    missing: tuple[str, ...] = ()
    #: graded name -> a later unit that also defines it but does not parse (the earlier one is graded)
    redefinitions: dict[str, UnitSyntaxError] = field(default_factory=dict)


# ``[ \t\f]*``, not ``\s*``: ``\s`` also matches newlines, which made this quadratic on blank lines.
_CLASS_RE = re.compile(r"^[ \t\f]*class\s+([A-Za-z_]\w*)", re.MULTILINE)


def _class_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t\f]*class\s+{re.escape(name)}\b", re.MULTILINE)


def parse_units(units: tuple[SourceUnit, ...] | list[SourceUnit]) -> ParsedSource:
    """Parse every unit separately into top-level statements."""
    statements: list[Statement] = []
    errors: list[UnitSyntaxError] = []
    for unit in units:
        parsed = _parse_unit(unit, len(statements))
        if isinstance(parsed, UnitSyntaxError):
            errors.append(parsed)
        else:
            statements += parsed
    return ParsedSource(tuple(statements), tuple(errors))


def _parse_unit(unit: SourceUnit, first: int) -> list[Statement] | UnitSyntaxError:
    """The unit's statements (numbered from ``first``), or why the unit cannot be read."""
    lines = unit.source.split("\n")
    try:
        tree = parse_python(unit.source)
    except SyntaxError as e:
        lineno = e.lineno or 1
        text = lines[lineno - 1] if 0 < lineno <= len(lines) else (e.text or "")
        return UnitSyntaxError(unit, lineno, e.offset or 0, e.msg, text)
    except ValueError as e:  # e.g. null bytes
        return UnitSyntaxError(unit, 1, 0, str(e), "")
    except (RecursionError, MemoryError):  # CPython's parser gave up: nested thousands of levels deep
        lineno = _too_deep_line(unit.source, lines)
        return _too_deep(unit, lineno, lines, 0)
    spans = []
    for node in tree.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        # Each level of nesting takes at least one character of source, so a statement of
        # fewer characters than the cap cannot pass it: only longer ones are walked.
        if start == end and node.end_col_offset is not None:
            length = node.end_col_offset - node.col_offset
        else:
            length = sum(len(line) + 1 for line in lines[start - 1:end])
        if length + 8 > MAX_AST_DEPTH:
            deep = _depth_beyond(node, MAX_AST_DEPTH)
            if deep is not None:
                return _too_deep(unit, deep[1], lines, deep[0])
        star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        spans.append((start, end, (node.lineno, node.col_offset, end, node.end_col_offset),
                      (star, not isinstance(node, _NOT_DEFINITIONS), isinstance(node, ast.ClassDef)),
                      _forward_args(node)))
    tree = node = None  # only the spans are kept: the tree is freed before the statements are built
    blanks = find_blanks(unit.source, lines)
    starts = [span[0] for span in spans]
    first_blank: dict[int, Blank] = {}  # index in spans -> its first blank
    for anchor, blank in blanks:
        i = bisect.bisect_right(starts, anchor) - 1
        if i >= 0 and anchor <= spans[i][1] and (i not in first_blank or blank.lineno < first_blank[i].lineno):
            first_blank[i] = blank
    out = []
    cut = _Segments(lines)
    for i, (start, end, where, kind, forward) in enumerate(spans):
        shares_first = i > 0 and spans[i - 1][1] >= start
        shares_last = i + 1 < len(spans) and spans[i + 1][0] <= end
        if shares_first or shares_last:  # `a = 1; b = 2`: each statement gets its own text, not the line
            source = cut.segment(*where)
        else:
            source = "\n".join(lines[start - 1:end])
        try:
            defines, eager, deferred = _names(source)
        except (RecursionError, MemoryError):
            return _too_deep(unit, start, lines, 0)
        out.append(Statement(first + i, unit, start, source, frozenset(defines), frozenset(eager),
                             frozenset(deferred), *kind, blank=first_blank.get(i), forward_args=forward))
    return out


def _forward_args(node: ast.AST) -> tuple[str, ...] | None:
    """A class's own ``def forward(self, ...)``: its parameter names after ``self`` (the body's last one wins)."""
    if not isinstance(node, ast.ClassDef):
        return None
    found = None
    for item in node.body:  # direct children only: no walk into the student's code
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "forward":
            a = item.args
            found = tuple(p.arg for p in [*a.posonlyargs, *a.args][1:])
    return found


_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


def find_blanks(source: str, lines: list[str] | None = None) -> list[tuple[int, Blank]]:
    """The template's blanks left unfilled in ``source`` (code that parses): (anchor line, blank) pairs.

    A comment that holds ``BLANK_MARKER`` is an unfilled blank when its slot is still empty:

    - it sits in brackets that hold nothing but comments (``torch.zeros(`` / ``# FILL IN HERE`` / ``)``);
    - it is on a line of its own, and the next statement of its block is a placeholder (``pass``,
      ``...``, ``raise NotImplementedError``), or its block holds nothing else but a docstring;
    - it follows a placeholder on the placeholder's own line (``pass  # FILL IN HERE``).

    A marker with code beside it in its brackets, or code after it in its block, is a comment the
    student kept: the code was written, and the marker does not count. (A marker right after ``=``
    or an operator does not parse: ``UnitSyntaxError`` tells that blank.) The anchor is a line of
    the statement the blank belongs to. One pass of the tokenizer: linear, no recursion.
    """
    if BLANK_MARKER not in source:
        return []
    lines = source.split("\n") if lines is None else lines
    found: list[tuple[int, Blank]] = []
    brackets: list[list[Any]] = []        # open brackets, innermost last: [line, holds code, marker lines]
    own_line: list[int] = []              # markers on lines of their own since the last statement
    own_cols: list[int] = []
    trailing: list[int] = []              # markers after code on the current logical line
    head: list[str] = []                  # the current logical line's first two tokens
    count, start, last, last_type = 0, None, "", 0
    body_empty = False                    # only a block header, and perhaps a docstring, since the last statement
    prev_line, prev_col = 0, 0            # where the previous logical line starts

    def marker(line: int) -> Blank:
        return Blank(line, _line_text(lines, line))

    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            kind = tok.type
            if kind == tokenize.COMMENT:
                if BLANK_MARKER in tok.string:
                    if brackets:
                        brackets[-1][2].append(tok.start[0])
                    elif start is not None:
                        trailing.append(tok.start[0])
                    else:
                        own_line.append(tok.start[0])
                        own_cols.append(tok.start[1])
                continue
            if kind in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
                continue
            if kind in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if start is not None:
                    line, col = start
                    placeholder = (count == 1 and head[0] in ("pass", "...")) or head == ["raise", "NotImplementedError"]
                    for m, m_col in zip(own_line, own_cols):
                        if placeholder and (m_col == col or body_empty):
                            found.append((line, marker(m)))
                        elif body_empty and col < prev_col:  # the block ended: a docstring, then the marker
                            found.append((prev_line, marker(m)))
                    if placeholder:
                        found += [(line, marker(m)) for m in trailing]
                    body_empty = last == ":" or (body_empty and count == 1 and last_type == tokenize.STRING)
                    prev_line, prev_col = line, col
                elif body_empty:  # the end of the source, after a docstring
                    found += [(prev_line, marker(m)) for m in own_line]
                own_line, own_cols, trailing, head, count, start = [], [], [], [], 0, None
                continue
            if start is None:
                start = tok.start
            count += 1
            if len(head) < 2:
                head.append(tok.string)
            last, last_type = tok.string, kind
            if kind == tokenize.OP and tok.string in _CLOSE:
                if brackets:
                    opened, holds_code, markers = brackets.pop()
                    if markers and not holds_code:
                        found += [(m, Blank(m, _lines_text(lines, (opened, m, tok.end[0])))) for m in markers]
                continue
            if brackets:
                brackets[-1][1] = True
            if kind == tokenize.OP and tok.string in _OPEN:
                brackets.append([tok.start[0], False, []])
    except (tokenize.TokenError, SyntaxError, ValueError):  # the tokenizer disagrees with the parser: keep what was found
        pass
    return found


def _line_text(lines: list[str], lineno: int) -> str:
    """Line ``lineno`` (1-based), stripped; a very long line is cut first, so the cost is bounded."""
    return lines[lineno - 1][:2 * _SHOWN].strip() if 0 < lineno <= len(lines) else ""


def _lines_text(lines: list[str], numbers: tuple[int, ...]) -> str:
    """The lines ``numbers`` (ascending) on one line, with ``...`` where lines between are left out."""
    shown: list[str] = []
    for i, n in enumerate(numbers):
        if i and n == numbers[i - 1]:
            continue
        if i and n > numbers[i - 1] + 1:
            shown.append("...")
        shown.append(_line_text(lines, n))
    return " ".join(x for x in shown if x)


def _too_deep(unit: SourceUnit, lineno: int, lines: list[str], depth: int) -> UnitTooDeep:
    text = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    how = f"nested {depth} levels deep" if depth else f"nested more than {MAX_AST_DEPTH} levels deep"
    return UnitTooDeep(unit, lineno, 0, how, text, depth, MAX_AST_DEPTH)


def _depth_beyond(node: ast.AST, limit: int) -> tuple[int, int] | None:
    """(how deep ``node`` nests, the line where it passes ``limit``), or None within it. No recursion."""
    stack = [(node, 1, getattr(node, "lineno", 1))]
    deepest, where = 0, None
    while stack:
        n, depth, lineno = stack.pop()
        lineno = getattr(n, "lineno", lineno)
        deepest = max(deepest, depth)
        if depth == limit + 1 and where is None:
            where = lineno
        for child in ast.iter_child_nodes(n):
            stack.append((child, depth + 1, lineno))
    return (deepest, where) if where is not None else None


def _too_deep_line(source: str, lines: list[str]) -> int:
    """Where a unit that CPython could not parse is too deep: a line of the first chunk that fails so.

    Chunks start at lines beginning in column 0 (a guess at top-level statements); each chunk
    is parsed alone, then each of its lines, so the whole search is linear. The line that
    fails alone, else the chunk's first line. When no chunk fails alone (an expression spread
    over lines that start in column 0), the first line of the logical line with the most
    operators, found by the tokenizer (iterative, linear).
    """
    starts = [i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", "#", ")", "]", "}")
              and not re.match(r"(elif|else|except|finally)\b", line)] + [len(lines)]
    for a, b in itertools.pairwise(starts):
        if _gives_up("\n".join(lines[a:b])):
            return next((i + 1 for i in range(a, b) if _gives_up(lines[i].strip())), a + 1)
    return _busiest_logical_line(source)


def _busiest_logical_line(source: str) -> int:
    best, best_line, count, start = -1, 1, 0, None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if start is None and tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                start = tok.start[0]
            count += tok.type == tokenize.OP
            if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if count > best:
                    best, best_line = count, start or 1
                count, start = 0, None
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return best_line if count <= best else (start or best_line)


def _gives_up(source: str) -> bool:
    """Does CPython's parser give up on ``source`` for its depth (not for a SyntaxError)?"""
    try:
        parse_python(source)
    except (RecursionError, MemoryError):
        return True
    except (SyntaxError, ValueError):
        pass
    return False


class _Segments:
    """Exact source of statements that share a line (column offsets count UTF-8 bytes)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.encoded: dict[int, bytes | None] = {}  # line index -> its UTF-8 (None: ASCII, offsets are indexes)

    def _cut(self, index: int, start: int, end: int | None) -> str:
        if index not in self.encoded:
            line = self.lines[index]
            self.encoded[index] = None if line.isascii() else line.encode("utf-8", "surrogatepass")
        data = self.encoded[index]
        if data is None:
            return self.lines[index][start:end]
        return data[start:end].decode("utf-8", "surrogatepass")

    def segment(self, lineno: int, col: int, end_lineno: int, end_col: int | None) -> str:
        first, last = lineno - 1, end_lineno - 1
        if first == last:
            return self._cut(first, col, end_col)
        return "\n".join([self._cut(first, col, None), *self.lines[first + 1:last], self._cut(last, 0, end_col)])


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
    # Nested scopes, without recursion: (table, inside a function?)
    stack = [(child, False) for child in top.get_children()]
    while stack:
        table, in_function = stack.pop()
        is_function = in_function or table.get_type() in ("function", "lambda")
        for sym in table.get_symbols():
            if sym.is_global() and (sym.is_referenced() or sym.is_assigned()):
                (deferred if is_function else eager).add(sym.get_name())
        stack += [(child, is_function) for child in table.get_children()]
    return defines, eager, deferred


def slice_for(parsed: ParsedSource, names: list[str] | tuple[str, ...]) -> Slice:
    """Select the statements needed to define ``names`` (and what those need, transitively).

    Each lookup is a bisection in an index of definitions, so slicing is O(n log n).
    """
    statements = parsed.statements
    end = len(statements)
    selected: set[int] = set()
    definitions: dict[str, Statement] = {}
    missing: list[str] = []
    redefinitions: dict[str, UnitSyntaxError] = {}
    last_def = parsed.last_definition

    work: list[Statement] = []
    for name in names:
        s = last_def(name, end)
        if s is None:
            missing.append(name)
            continue
        definitions[name] = s
        work.append(s)
        broken = _broken_redefinition(parsed, name, s)
        if broken:
            redefinitions[name] = broken
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
        for i in parsed._star_imports:
            if i >= last:
                break
            selected.add(statements[i].position)
    chosen = tuple(s for s in statements if s.position in selected)
    return Slice(chosen, definitions, tuple(missing), redefinitions)


def _broken_redefinition(parsed: ParsedSource, name: str, s: Statement) -> UnitSyntaxError | None:
    pattern = _class_re(name)
    for err in parsed.syntax_errors:
        if err.unit.index > s.unit.index and pattern.search(err.unit.source):
            return err
    return None
