"""Reading a submission: a notebook (any nbformat version) or a ``.py`` file, as source units.

A source unit is one code cell (or the whole ``.py`` file) with IPython syntax made
harmless: line magics and ``!shell`` lines become ``pass`` (so line numbers and
indentation survive), and cells run by a non-Python cell magic (``%%bash``...) are dropped.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import SubmissionUnreadable, UsageError

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

_MAGIC_LINE = re.compile(r"^(\s*)(?:[%!]|\w+\s*=\s*[%!])")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?\??\s*$|^\s*\?\??[\w.]+\s*$")


@dataclass(frozen=True)
class SourceUnit:
    """One piece of Python source: a notebook code cell or a whole ``.py`` file.

    ``label`` is what students see ("cell 7" counts every cell from 1, as the notebook
    shows them; "line" numbers are within the unit).
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


def read_submission(path: Path) -> Submission:
    """Read ``path`` into a ``Submission``.

    Raises ``UsageError`` for a missing path or unsupported kind of file, and
    ``SubmissionUnreadable`` for a file of the right kind whose content can't be read.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a .ipynb or .py file (use `grade batch` for a folder)")
    suffix = path.suffix.lower()
    if suffix == ".py":
        return _read_python(path)
    if suffix == ".ipynb":
        return _read_notebook(path)
    raise UsageError(f"{path}: expected a .ipynb notebook or a .py file, not {suffix or 'a file without extension'}")


def _read_python(path: Path) -> Submission:
    data = path.read_bytes()
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

    data = path.read_bytes()
    if not data.strip():
        raise SubmissionUnreadable(f"{path.name} is empty (0 bytes); save the notebook and submit it again")
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SubmissionUnreadable(
            f"{path.name} is not a valid notebook file (not JSON: {e}); re-download it from Jupyter "
            "with File > Download as > Notebook (.ipynb)"
        ) from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise SubmissionUnreadable(f"{path.name} is JSON but not a Jupyter notebook (no 'nbformat' field)")
    _drop_outputs(raw)  # outputs (images...) are never needed; dropping them keeps big files fast
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4, capture_validation_error={})
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
            units.append(SourceUnit(i, f"cell {i}", unit_source))
    if not units:
        raise SubmissionUnreadable(f"{path.name} has no code cells; write your code in code cells and submit again")
    meta = nb.get("metadata", {}).get("grader", {})
    assignment = meta.get("assignment") if isinstance(meta, dict) else None
    return Submission(path, tuple(units), assignment if isinstance(assignment, str) else None, "notebook")


def _drop_outputs(raw: dict) -> None:
    cells = list(raw.get("cells") or [])
    for sheet in raw.get("worksheets") or []:  # nbformat 3
        if isinstance(sheet, dict):
            cells += sheet.get("cells") or []
    for cell in cells:
        if isinstance(cell, dict) and "outputs" in cell:
            cell["outputs"] = []


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
        except (SyntaxError, ValueError):
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
