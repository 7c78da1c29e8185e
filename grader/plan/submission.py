"""Reading a submission: a notebook (any nbformat version) or a ``.py`` file, as source units.

A source unit is one code cell (or the whole ``.py`` file, or one input of a kernel's
history) with IPython syntax made harmless (``grader.plan.ipython``).

Submissions are untrusted and read in the grader's own process, so reading is bounded
before anything is parsed (``grader.plan.limits``): a ``.py`` file is refused from its size
alone (``MAX_CODE_BYTES``); a notebook (at most ``MAX_NOTEBOOK_BYTES``) is read once and
walked by the bounded scanner (``grader.plan.notebook_scan``), and only the minimal notebook
it makes goes to nbformat, for the version upgrade. Measurements: ``benchmarks/bench_plan.py``.
"""
from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from grader.errors import SubmissionUnreadable, UsageError
from grader.plan.ipython import clean_ipython
from grader.plan.limits import MAX_CODE_BYTES, MAX_NOTEBOOK_BYTES
from grader.plan.notebook_scan import BadNotebook, CodeTooBig, NotJSON, TooMuch, scan_notebook
from grader.model.text import human_size
from grader.plan.parsing import parse as parse_python

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
            scanned = scan_notebook(data, f)
            if scanned is None:
                raise SubmissionUnreadable(f"{path.name} is JSON but not a Jupyter notebook (no 'nbformat' field)")
            minimal, counts = scanned
    except NotJSON as e:
        raise SubmissionUnreadable(
            f"{path.name} is not a valid notebook file (not JSON: {e}); re-download it from Jupyter "
            "with File > Download as > Notebook (.ipynb)"
        ) from None
    except TooMuch as e:
        raise SubmissionUnreadable(f"{path.name} {e}") from None
    except BadNotebook as e:
        raise SubmissionUnreadable(f"{path.name} could not be read as a notebook: {e}") from None
    except CodeTooBig as e:
        raise SubmissionUnreadable(_code_too_big(path.name, str(e))) from None
    del data, scanned  # only the minimal notebook is needed from here on
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
            body = parse_python(source).body
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
