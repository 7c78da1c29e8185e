"""The bounded notebook scanner: the few values the grader needs, read from a notebook's JSON bytes.

A notebook (at most ``MAX_NOTEBOOK_BYTES``) is never handed whole to ``json.loads`` or
nbformat. This scanner walks its JSON without recursion, skips what the grader never needs
(outputs, attachments, metadata: any size, any depth) without building it, and decodes only
each cell's type, source and execution count, the version fields and
``metadata.grader.assignment``, with strict type checks. ``scan_notebook`` returns the minimal
notebook made of them, for nbformat's version upgrade. Its work is capped by
``MAX_NOTEBOOK_NODES`` and ``MAX_CELLS``, the code it finds by ``MAX_CODE_BYTES``.
"""
from __future__ import annotations

import json
import re

from grader.plan.limits import MAX_CELLS, MAX_CODE_BYTES, MAX_NOTEBOOK_NODES
from grader.model.text import human_size


def scan_notebook(data: bytearray, file) -> tuple[dict, list[int | None]] | None:
    """The minimal notebook of ``data`` (the file's bytes, blanked in place as the scan goes; ``file``, the
    open file, is read again at the offsets of the values decoded) and each cell's execution count; None
    for JSON that is not a notebook (no ``nbformat`` field). Raises ``NotJSON``, ``TooMuch``, ``BadNotebook``
    or ``CodeTooBig``."""
    scanner = _NotebookScan(data, file)
    found = scanner.run()
    if found is None or found.nbformat is None:
        return None
    return _minimal_notebook(found, scanner)


# --- The notebook scanner --------------------------------------------------------------------
#
# It walks the bytes of the file, read once into a buffer in which every escaped backslash
# and escaped quote is then blanked in place (same length, so positions agree with the file):
# there every '"' starts or ends a string, and a string is just '"[^"]*"'. Skipping a value is
# a loop over its brackets only; runs of anything else, strings included, are consumed by one
# bounded regex (bounded repeats keep the regex engine's memory flat, and no quantifier ever
# backtracks). The few values the grader needs are decoded from the file itself (read again
# at their offsets), so memory is one copy of the file, whatever it holds.

_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"]*(")?')
_FLAT = re.compile(rb'(?:[^"\[\]{}]+|"[^"]*(?:"|\Z)){0,4096}')
_SCALAR = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity")
_BACKSLASHES = re.compile(rb"\\*")
_QUOTE, _COLON, _COMMA = ord('"'), ord(":"), ord(",")
_LIST, _END_LIST, _OBJECT, _END_OBJECT = ord("["), ord("]"), ord("{"), ord("}")
_CHUNK = 1 << 20
#: Fields a cell's code may be in: v4 "source", v2/v3 "input", v1 "code".
_CODE_FIELDS = ("source", "input", "code")
#: Fields a code cell's execution count may be in: v4 "execution_count", v2/v3 "prompt_number".
_COUNT_FIELDS = ("execution_count", "prompt_number")
#: The largest execution count shown; anything else (a float, a string, a list) is read as none.
_MAX_COUNT = 10 ** 9
#: JSON text of code-cell sources decoded at most (escapes and line lists make JSON longer than code).
_MAX_SOURCE_JSON = 8 * MAX_CODE_BYTES


class NotJSON(Exception):
    """The file is not JSON; the message says what and where, like ``json``'s own."""


class TooMuch(Exception):
    """The notebook is beyond the scanner's caps; the message finishes '<name> ...'."""


class BadNotebook(Exception):
    """JSON, but not a notebook the grader can read (a field of the wrong type)."""


class CodeTooBig(Exception):
    """The code cells hold more than ``MAX_CODE_BYTES``; the message is the size."""


def _blank_escapes(data: bytearray) -> None:
    r"""Turn every ``\\`` and ``\"`` of ``data`` into ``__``, in place (same length), a chunk at a time."""
    start, n = data.find(b"\\"), len(data)
    while 0 <= start < n:
        end = min(start + _CHUNK, n)
        end = _BACKSLASHES.match(data, end).end()  # never split a run of backslashes...
        end = min(end + 1, n)  # ...nor a backslash from the quote it escapes
        data[start:end] = data[start:end].replace(b"\\\\", b"__").replace(b'\\"', b"__")
        start = end


class _Cell:
    __slots__ = ("is_object", "cell_type", "fields", "count")

    def __init__(self, is_object: bool):
        self.is_object = is_object
        self.cell_type: str | None = None
        self.fields: dict[str, tuple[int, int]] = {}
        self.count: int | None = None  # the execution count (v4 "execution_count", v2/v3 "prompt_number")


class _Found:
    """What the scanner keeps of a notebook."""

    def __init__(self):
        self.nbformat: object = None
        self.nbformat_minor: object = None
        self.assignment: str | None = None
        self.cells: list[_Cell] | str | None = None  # v1, v4 ("not a list" when it is not)
        self.sheets: list[list[_Cell] | str] | str | None = None  # v2, v3 worksheets


class _NotebookScan:
    """Walks ``data`` (the file's bytes, escapes blanked in place); decodes values from ``file`` itself."""

    def __init__(self, data: bytearray, file):
        _blank_escapes(data)
        self.data = data
        self.file = file
        self.n = len(data)
        self.left = MAX_NOTEBOOK_NODES
        self.cells_seen = 0
        self.found = _Found()

    # -- primitives
    def fail(self, what: str, pos: int):
        pos = min(pos, self.n)
        line = self.data.count(b"\n", 0, pos) + 1
        column = pos - (self.data.rfind(b"\n", 0, pos) + 1) + 1
        raise NotJSON(f"{what}: line {line} column {column} (char {pos})")

    def node(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TooMuch(f"holds more than {MAX_NOTEBOOK_NODES:,} JSON lists, objects and fields outside its code "
                           "(in outputs or metadata); the grader reads at most that many. Clear all outputs (Kernel > "
                           "Restart & Clear Output, or Edit > Clear All Outputs), save, and submit again")

    def at(self, pos: int) -> int:
        return self.data[pos] if pos < self.n else -1

    def ws(self, pos: int) -> int:
        return _WS.match(self.data, pos).end()

    def string_end(self, pos: int) -> int:
        m = _STRING.match(self.data, pos)
        if m.group(1) is None:
            self.fail("Unterminated string starting at", pos)
        return m.end()

    def skip(self, pos: int) -> int:
        """The end of the value at ``pos``, without building it: no recursion, any depth or size."""
        c = self.at(pos)
        if c == _QUOTE:
            return self.string_end(pos)
        if c != _LIST and c != _OBJECT:
            m = _SCALAR.match(self.data, pos)
            if m is None:
                self.fail("Expecting value", pos)
            return m.end()
        data, n, start, closers = self.data, self.n, pos, []
        while True:
            if pos >= n:
                self.fail("Unterminated array or object starting at", start)
            c = data[pos]
            if c == _LIST or c == _OBJECT:
                closers.append(c + 2)  # '[' + 2 == ']', '{' + 2 == '}'
                self.node()
            else:  # a closing bracket: _FLAT stops only at brackets and at the end
                if closers.pop() != c:
                    self.fail("Expecting ',' delimiter", pos)
                if not closers:
                    return pos + 1
            pos += 1
            while True:
                end = _FLAT.match(data, pos).end()
                if end == pos:
                    break
                pos = end

    def decode(self, start: int, end: int):
        """The JSON value at ``start:end`` of the file (a value the grader needs, already bounded in size).

        Read again from the file, as ``data`` has its escapes blanked.
        """
        self.file.seek(start)
        raw = self.file.read(end - start)
        if len(raw) != end - start:
            raise NotJSON("the file changed while it was being read")
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            self.fail("Invalid UTF-8 text", start + e.start)
        except json.JSONDecodeError as e:
            self.fail(e.msg, start + e.pos)
        except RecursionError:  # nested lists where text belongs
            return _DEEP

    def key(self, start: int, end: int) -> str | None:
        """The field name; None for one the grader never reads (long, or not plain ASCII)."""
        if end - start > 100:  # longer than any field the grader reads, even escaped
            return None
        raw = self.data[start + 1:end - 1]
        if b"\\" in raw:
            value = self.decode(start, end)
            return value if isinstance(value, str) else None
        return raw.decode("ascii") if raw.isascii() else None

    def small(self, start: int, limit: int = 64):
        end = self.skip(start)
        return (self.decode(start, end) if end - start <= limit else _DEEP), end

    def walk_object(self, pos: int, on_field) -> int:
        """Walk the object at ``pos``: ``on_field(key, value_pos)`` returns the value's end."""
        self.node()
        pos = self.ws(pos + 1)
        if self.at(pos) == _END_OBJECT:
            return pos + 1
        while True:
            if self.at(pos) != _QUOTE:
                self.fail("Expecting property name enclosed in double quotes", pos)
            key_end = self.string_end(pos)
            key = self.key(pos, key_end)
            pos = self.ws(key_end)
            if self.at(pos) != _COLON:
                self.fail("Expecting ':' delimiter", pos)
            self.node()
            pos = self.ws(on_field(key, self.ws(pos + 1)))
            c = self.at(pos)
            if c == _COMMA:
                pos = self.ws(pos + 1)
            elif c == _END_OBJECT:
                return pos + 1
            else:
                self.fail("Expecting ',' delimiter", pos)

    def walk_list(self, pos: int, on_item) -> int:
        self.node()
        pos = self.ws(pos + 1)
        if self.at(pos) == _END_LIST:
            return pos + 1
        while True:
            pos = self.ws(on_item(pos))
            c = self.at(pos)
            if c == _COMMA:
                pos = self.ws(pos + 1)
            elif c == _END_LIST:
                return pos + 1
            else:
                self.fail("Expecting ',' delimiter", pos)

    # -- the notebook
    def run(self) -> _Found | None:
        """The notebook's fields; None when the file is JSON but not an object."""
        pos = self.ws(3 if self.data.startswith(b"\xef\xbb\xbf") else 0)
        is_object = self.at(pos) == _OBJECT
        pos = self.ws(self.walk_object(pos, self.top_field) if is_object else self.skip(pos))
        if pos < self.n:
            self.fail("Extra data", pos)
        return self.found if is_object else None

    def top_field(self, key: str | None, pos: int) -> int:
        found = self.found
        if key in ("nbformat", "nbformat_minor"):
            value, end = self.small(pos)
            setattr(found, key, value)
            return end
        if key == "cells":
            found.cells, end = self.cell_list(pos)
            return end
        if key == "worksheets":
            if self.at(pos) != _LIST:
                found.sheets = "not a list"
                return self.skip(pos)
            sheets: list = []
            end = self.walk_list(pos, lambda p: self.worksheet(p, sheets))
            found.sheets = sheets
            return end
        if key == "metadata":
            found.assignment = None
            if self.at(pos) == _OBJECT:
                return self.walk_object(pos, self.metadata_field)
        return self.skip(pos)

    def metadata_field(self, key: str | None, pos: int) -> int:
        if key == "grader":
            self.found.assignment = None
            if self.at(pos) == _OBJECT:
                return self.walk_object(pos, self.grader_field)
        return self.skip(pos)

    def grader_field(self, key: str | None, pos: int) -> int:
        if key != "assignment":
            return self.skip(pos)
        value, end = self.small(pos, 4096)
        self.found.assignment = value if isinstance(value, str) else None
        return end

    def worksheet(self, pos: int, sheets: list) -> int:
        if self.at(pos) != _OBJECT:
            sheets.append("not an object")
            return self.skip(pos)
        cells: list = [[]]

        def field(key, p):
            if key != "cells":
                return self.skip(p)
            cells[0], end = self.cell_list(p)
            return end
        end = self.walk_object(pos, field)
        sheets.append(cells[0])
        return end

    def cell_list(self, pos: int) -> tuple[list[_Cell] | str, int]:
        if self.at(pos) != _LIST:
            return "not a list", self.skip(pos)
        cells: list[_Cell] = []
        return cells, self.walk_list(pos, lambda p: self.cell(p, cells))

    def cell(self, pos: int, cells: list[_Cell]) -> int:
        self.cells_seen += 1
        if self.cells_seen > MAX_CELLS:
            raise TooMuch(f"has more than {MAX_CELLS:,} cells; the grader reads notebooks of at most {MAX_CELLS:,} "
                           "cells. Merge or delete cells, save, and submit again")
        cell = _Cell(self.at(pos) == _OBJECT)
        cells.append(cell)
        if not cell.is_object:
            return self.skip(pos)

        def field(key, p):
            if key == "cell_type":
                value, end = self.small(p)
                cell.cell_type = value if isinstance(value, str) else None
                return end
            if key in _COUNT_FIELDS:
                value, end = self.small(p)
                cell.count = value if type(value) is int and 0 <= value <= _MAX_COUNT else None
                return end
            end = self.skip(p)
            if key in _CODE_FIELDS:
                cell.fields[key] = (p, end)
            return end
        return self.walk_object(pos, field)


_DEEP = object()  # a value too big or too deep to be what the grader needs


def _minimal_notebook(found: _Found, scanner: _NotebookScan) -> tuple[dict, list[int | None]]:
    """The notebook with only what the grader reads: cell types, code, the assignment, the version;
    and each cell's execution count (None for a non-code cell, or a cell never run).

    Non-code cells become empty markdown (or v1 text) cells, so cells keep their numbers.
    """
    major, minor = found.nbformat, found.nbformat_minor
    if type(major) is not int:
        raise BadNotebook("its 'nbformat' field is not a version number")
    if type(minor) is not int:
        minor = 0
    if major in (2, 3):
        if isinstance(found.sheets, str):
            raise BadNotebook("its 'worksheets' field is not a list")
        cells = []
        for sheet in found.sheets or []:
            if isinstance(sheet, str):
                raise BadNotebook(f"a worksheet is {sheet}")
            cells += sheet
        field = "input"
    else:
        if isinstance(found.cells, str):
            raise BadNotebook("its 'cells' field is not a list")
        cells = found.cells or []
        field = "code" if major == 1 else "source"
    json_left, code_bytes, out = _MAX_SOURCE_JSON, 0, []
    counts = [cell.count if cell.cell_type == "code" else None for cell in cells]
    for number, cell in enumerate(cells, start=1):
        if not cell.is_object:
            raise BadNotebook(f"cell {number} is not a JSON object")
        if cell.cell_type != "code":
            out.append(None)
            continue
        start, end = cell.fields.get(field, (0, 0))
        json_left -= end - start
        if json_left < 0:
            raise CodeTooBig(f"more than {human_size(MAX_CODE_BYTES)}")
        source = scanner.decode(start, end) if end > start else ""
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise BadNotebook(f"the code of cell {number} is not text")
        code_bytes += len(source.encode("utf-8", "surrogatepass"))
        out.append(source)
    if code_bytes > MAX_CODE_BYTES:
        raise CodeTooBig(human_size(code_bytes))
    metadata = {"grader": {"assignment": found.assignment}} if found.assignment is not None else {}
    if major == 1:
        return {"nbformat": 1, "nbformat_minor": minor, "cells": [
            {"cell_type": "code", "code": s} if s is not None else {"cell_type": "text", "text": ""} for s in out]}, counts
    if major in (2, 3):
        return {"nbformat": major, "nbformat_minor": minor, "metadata": metadata, "worksheets": [{"metadata": {}, "cells": [
            {"cell_type": "code", "input": s, "language": "python", "outputs": [], "metadata": {}} if s is not None
            else {"cell_type": "markdown", "source": "", "metadata": {}} for s in out]}]}, counts
    return {"nbformat": major, "nbformat_minor": minor, "metadata": metadata, "cells": [
        {"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None} if s is not None
        else {"cell_type": "markdown", "source": "", "metadata": {}} for s in out]}, counts
