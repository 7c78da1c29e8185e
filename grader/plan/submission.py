"""Reading a submission: a notebook (any nbformat version) or a ``.py`` file, as source units.

A source unit is one code cell (or the whole ``.py`` file) with IPython syntax made
harmless: line magics and ``!shell`` lines become ``pass`` (so line numbers and
indentation survive), and cells run by a non-Python cell magic (``%%bash``...) are dropped.

Submissions are untrusted and read in the grader's own process, so reading is bounded
before anything is parsed: a ``.py`` file is refused from its size alone
(``MAX_CODE_BYTES``), and a notebook (at most ``MAX_NOTEBOOK_BYTES``) is never handed
whole to ``json.loads`` or nbformat. A small scanner walks its JSON without recursion,
skips what the grader never needs (outputs, attachments, metadata: any size, any depth)
without building it, and decodes only each cell's type, source and execution count, the
version fields and ``metadata.grader.assignment``, with strict type checks. Only that minimal notebook goes to
nbformat, for the version upgrade. The scanner's work is capped by ``MAX_NOTEBOOK_NODES``
and ``MAX_CELLS``, and the code it finds by ``MAX_CODE_BYTES``. Measurements:
``benchmarks/bench_plan.py``.
"""
from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from grader.errors import SubmissionUnreadable, UsageError
from grader.report.text import human_size

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

MAX_CODE_BYTES = 256 * 1024
"""The most code a submission may hold: 256 KB (UTF-8 bytes), checked before any parsing.

A ``.py`` file's size (from ``os.stat``, before it is read), or the sum of a notebook's
code-cell sources (outputs never count). The course's notebooks hold 2-8 KB of code, so the
cap is over 30 times the largest; past it is pasted data, not an exercise. What it protects
is parsing: CPython's own ``ast.parse`` of 1 MB of one-line statements takes 2.3 s and
600 MB of memory (``compile`` alone 366 MB); at 256 KB the worst shapes measured take at
most about 0.8 s and 200 MB per parse, so the whole of reading, parsing and slicing fits in
a few seconds and well under 500 MB (benchmarks/bench_plan.py).
"""

MAX_NOTEBOOK_BYTES = 256 * 1024 * 1024
"""The largest notebook file the grader reads: 256 MB, refused from its size (``os.stat``).

Outputs are what make notebooks big (images, printed logs); they are skipped, never
decoded, so reading costs at most about twice the file's size in memory and stays linear
in time. Past this size the student is asked to clear the outputs.
"""

MAX_NOTEBOOK_NODES = 1_000_000
"""The most JSON lists, objects and object fields the notebook scanner walks or skips.

Strings and numbers are skipped at C speed whatever their number or size; only brackets
and the fields of the objects the grader reads cost a Python step (about 1.5 µs each), so
the cap bounds that part of the scan to about 1.5 s. The course's notebooks hold under 200;
a notebook of a thousand cells, each with a plot and a printed log, about 16,000.
"""

MAX_CELLS = 10_000
"""The most cells (of any type) a notebook may have; course notebooks have under 50."""

_MAGIC_LINE = re.compile(r"^(\s*)(?:[%!]|\w+\s*=\s*[%!])")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?\??\s*$|^\s*\?\??[\w.]+\s*$")


@dataclass(frozen=True)
class SourceUnit:
    """One piece of Python source: a notebook code cell or a whole ``.py`` file.

    ``label`` is what students see: "cell 7" counts every cell from 1, markdown cells
    included; where the cell has an execution count, Jupyter's own prompt follows it,
    "cell 7 (In [3])"; a kernel's input history is labelled by its prompts alone, "In [3]"
    (``history_units``). "line" numbers are within the unit.
    """

    index: int
    label: str
    source: str


@dataclass(frozen=True)
class Submission:
    """A read submission: its units, and the assignment its metadata names (if any)."""

    path: Path
    units: tuple[SourceUnit, ...]
    assignment: str | None = None
    kind: str = "notebook"


def size_cap(path: Path) -> int:
    """The largest file of ``path``'s kind that ``read_submission`` reads (a larger one is refused from its size)."""
    return MAX_CODE_BYTES if path.suffix.lower() == ".py" else MAX_NOTEBOOK_BYTES


def read_submission(path: Path) -> Submission:
    """Read ``path`` into a ``Submission``.

    Raises ``UsageError`` for a missing path or unsupported kind of file, and
    ``SubmissionUnreadable`` for a file of the right kind whose content can't be read
    (or is larger than the caps above allow).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:
        raise UsageError(f"no such file: {path}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory; give a .ipynb or .py file")
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionUnreadable(_LINK.format(name=path.name))
    suffix = path.suffix.lower()
    if suffix == ".py":
        return _read_python(path)
    if suffix == ".ipynb":
        return _read_notebook(path)
    raise UsageError(f"{path}: expected a .ipynb notebook or a .py file, not {suffix or 'a file without extension'}")


def _code_too_big(name: str, size: str) -> str:
    return (f"{name} holds {size} of code; the grader reads at most {human_size(MAX_CODE_BYTES)} of code per submission. "
            "Remove large pasted data or outputs from the code (load data from a file instead) and submit again")


#: A submission that is a symbolic link is never followed: it could point at another student's file or
#: the course's reference, which the grader (unlike the student's code) can read.
_LINK = ("{name} is a symbolic link, not a file; the grader never follows a link (it could point at someone "
         "else's work). Submit the notebook or .py file itself")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def _open_capped(path: Path, cap: int, too_big):
    """(the open file, its size); only a regular file, opened without following a link (checked on the open
    file itself, so that a link swapped in after a check is refused too); refused from its size alone when
    larger than ``cap``, before any read."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SubmissionUnreadable(_LINK.format(name=path.name)) from None
        raise SubmissionUnreadable(f"{path.name} could not be read ({e.strerror or e}); submit it again") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise SubmissionUnreadable(f"{path.name} is not a regular file; submit the file itself")
        if st.st_size > cap:
            raise SubmissionUnreadable(too_big(human_size(st.st_size)))
        f, fd = open(fd, "rb", buffering=0, closefd=True), -1
        with f:
            yield f, st.st_size
    except OSError as e:
        raise SubmissionUnreadable(f"{path.name} could not be read ({e.strerror or e}); submit it again") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _read_exactly(f, size: int, name: str) -> bytearray:
    """``size`` bytes (no more: the buffer is allocated once, at the size ``os.fstat`` gave)."""
    buf = bytearray(size)
    with memoryview(buf) as view:
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got < size or f.read(1):
        raise SubmissionUnreadable(f"{name} changed while it was being read; submit it again")
    return buf


def _read_python(path: Path) -> Submission:
    with _open_capped(path, MAX_CODE_BYTES, lambda size: _code_too_big(path.name, size)) as (f, size):
        data = bytes(_read_exactly(f, size, path.name))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionUnreadable(
            f"{path.name} is not UTF-8 text (byte {e.start}); save it as UTF-8 and submit again"
        ) from None
    if "\x00" in text:
        raise SubmissionUnreadable(f"{path.name} contains binary data, not Python source")
    if not text.strip():
        raise SubmissionUnreadable(f"{path.name} is empty; submit the file with your code in it")
    return Submission(path, (SourceUnit(1, path.name, clean_ipython(text)),), None, "python")


def _read_notebook(path: Path) -> Submission:
    import nbformat  # only here: reading a notebook is the only use

    too_big = lambda size: (  # noqa: E731
        f"{path.name} is {size}; the grader reads notebooks of at most {human_size(MAX_NOTEBOOK_BYTES)}. Clear all "
        "outputs (Kernel > Restart & Clear Output, or Edit > Clear All Outputs), save, and submit again")
    try:
        with _open_capped(path, MAX_NOTEBOOK_BYTES, too_big) as (f, size):
            data = _read_exactly(f, size, path.name)
            if not data or data.isspace():
                raise SubmissionUnreadable(f"{path.name} is empty (0 bytes); save the notebook and submit it again")
            scanner = _NotebookScan(data, f)
            found = scanner.run()
            if found is None or found.nbformat is None:
                raise SubmissionUnreadable(f"{path.name} is JSON but not a Jupyter notebook (no 'nbformat' field)")
            minimal, counts = _minimal_notebook(found, scanner)
    except _NotJSON as e:
        raise SubmissionUnreadable(
            f"{path.name} is not a valid notebook file (not JSON: {e}); re-download it from Jupyter "
            "with File > Download as > Notebook (.ipynb)"
        ) from None
    except _TooMuch as e:
        raise SubmissionUnreadable(f"{path.name} {e}") from None
    except _BadNotebook as e:
        raise SubmissionUnreadable(f"{path.name} could not be read as a notebook: {e}") from None
    except _CodeTooBig as e:
        raise SubmissionUnreadable(_code_too_big(path.name, str(e))) from None
    del data, scanner, found  # only the minimal notebook is needed from here on
    try:
        nb = nbformat.convert(nbformat.reader.reads(json.dumps(minimal)), 4)
    except Exception as e:  # nbformat raises many kinds for odd files
        raise SubmissionUnreadable(f"{path.name} could not be read as a notebook: {e}") from None
    units = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        unit_source = clean_ipython(source)
        if unit_source is not None:
            units.append(SourceUnit(i, cell_label(i, counts[i - 1] if i <= len(counts) else None), unit_source))
    if not units:
        raise SubmissionUnreadable(f"{path.name} has no code cells; write your code in code cells and submit again")
    meta = nb.get("metadata", {}).get("grader", {})
    assignment = meta.get("assignment") if isinstance(meta, dict) else None
    return Submission(path, tuple(units), assignment if isinstance(assignment, str) else None, "notebook")


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


class _NotJSON(Exception):
    """The file is not JSON; the message says what and where, like ``json``'s own."""


class _TooMuch(Exception):
    """The notebook is beyond the scanner's caps; the message finishes '<name> ...'."""


class _BadNotebook(Exception):
    """JSON, but not a notebook the grader can read (a field of the wrong type)."""


class _CodeTooBig(Exception):
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
        raise _NotJSON(f"{what}: line {line} column {column} (char {pos})")

    def node(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooMuch(f"holds more than {MAX_NOTEBOOK_NODES:,} JSON lists, objects and fields outside its code "
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
            raise _NotJSON("the file changed while it was being read")
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
            raise _TooMuch(f"has more than {MAX_CELLS:,} cells; the grader reads notebooks of at most {MAX_CELLS:,} "
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
        raise _BadNotebook("its 'nbformat' field is not a version number")
    if type(minor) is not int:
        minor = 0
    if major in (2, 3):
        if isinstance(found.sheets, str):
            raise _BadNotebook("its 'worksheets' field is not a list")
        cells = []
        for sheet in found.sheets or []:
            if isinstance(sheet, str):
                raise _BadNotebook(f"a worksheet is {sheet}")
            cells += sheet
        field = "input"
    else:
        if isinstance(found.cells, str):
            raise _BadNotebook("its 'cells' field is not a list")
        cells = found.cells or []
        field = "code" if major == 1 else "source"
    json_left, code_bytes, out = _MAX_SOURCE_JSON, 0, []
    counts = [cell.count if cell.cell_type == "code" else None for cell in cells]
    for number, cell in enumerate(cells, start=1):
        if not cell.is_object:
            raise _BadNotebook(f"cell {number} is not a JSON object")
        if cell.cell_type != "code":
            out.append(None)
            continue
        start, end = cell.fields.get(field, (0, 0))
        json_left -= end - start
        if json_left < 0:
            raise _CodeTooBig(f"more than {human_size(MAX_CODE_BYTES)}")
        source = scanner.decode(start, end) if end > start else ""
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise _BadNotebook(f"the code of cell {number} is not text")
        code_bytes += len(source.encode("utf-8", "surrogatepass"))
        out.append(source)
    if code_bytes > MAX_CODE_BYTES:
        raise _CodeTooBig(human_size(code_bytes))
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


def cell_label(number: int, count: int | None = None) -> str:
    """'cell 7', or 'cell 7 (In [3])' where the cell has an execution count (what Jupyter shows beside it)."""
    return f"cell {number}" if count is None else f"cell {number} (In [{count}])"


def history_units(inputs, current: int | None = None) -> tuple[SourceUnit, ...]:
    """A kernel's input history (IPython's ``In``: ``inputs[n]`` is what ran as ``In [n]``) as source units.

    Each input is one unit, labelled "In [n]", in the order it ran, so the slicer's rule
    (the last definition wins) picks what the kernel holds now. Inputs that only use the
    grader (``from grader import check``, ``check()``) are left out, and so is what follows
    the call to ``check`` in the ``current`` input: it has not run yet. Bounded like a file:
    at most ``MAX_CODE_BYTES`` of code in all (``SubmissionUnreadable`` past it).
    """
    units, total = [], 0
    for n, raw in enumerate(inputs):
        if not isinstance(raw, str) or not raw.strip():
            continue
        total += len(raw.encode("utf-8", "surrogatepass"))
        if total > MAX_CODE_BYTES:
            raise SubmissionUnreadable(
                f"this kernel has run more than {human_size(MAX_CODE_BYTES)} of code, more than the grader reads; "
                "restart the kernel, run your notebook's cells once, and call check() again")
        source = clean_ipython(raw)
        if source is None:
            continue
        try:
            body = ast.parse(source).body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            units.append(SourceUnit(n, f"In [{n}]", source))  # the slicer says why it cannot be read
            continue
        if n == current:
            cut = next((i for i, node in enumerate(body) if _calls_check(node)), None)
            if cut is not None:
                first = min([body[cut].lineno] + [d.lineno for d in getattr(body[cut], "decorator_list", [])])
                source, body = "\n".join(source.split("\n")[:first - 1]), body[:cut]
        if all(_only_grader(node) for node in body):
            continue
        units.append(SourceUnit(n, f"In [{n}]", source))
    return tuple(units)


def _calls_check(node: ast.stmt) -> bool:
    """A top-level expression or assignment that calls ``check(...)`` (or ``grader.check``, ``local.check``)."""
    if not isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)):
        return False
    return any(isinstance(c, ast.Call) and (getattr(c.func, "id", None) == "check"
                                            or getattr(c.func, "attr", None) == "check")
               for c in ast.walk(node))


def _only_grader(node: ast.stmt) -> bool:
    """A statement that uses the grader and nothing the graded code could need: importing it, calling check, pass."""
    if isinstance(node, ast.Import):
        return all(a.name == "grader" or a.name.startswith("grader.") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module == "grader" or (node.module or "").startswith("grader."))
    return isinstance(node, ast.Pass) or _calls_check(node)


def clean_ipython(source: str) -> str | None:
    """Make IPython-only syntax harmless, keeping line numbers. None drops the unit.

    >>> clean_ipython("%matplotlib inline\\nx = 1")
    'pass\\nx = 1'
    """
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines[0] = "pass"
    else:
        try:
            ast.parse(source)
            return source  # plain Python: leave alone (a line may start with % as an operator)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # too deep: parse_units says so
            pass
    out = []
    for line in lines:
        m = _MAGIC_LINE.match(line)
        if m or _HELP_LINE.match(line):
            indent = m.group(1) if m else re.match(r"^\s*", line).group(0)
            out.append(indent + "pass")
        else:
            out.append(line)
    return "\n".join(out)
