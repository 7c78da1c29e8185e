"""IPython syntax in a submission's code, made harmless for plain Python.

Line magics and ``!shell`` lines become ``pass`` (so line numbers and indentation survive),
``name?`` help lines too, and a cell run by a non-Python cell magic (``%%bash``...) is dropped.
Code that already parses as Python is left exactly as it is.
"""
from __future__ import annotations

import re

from grader.plan.parsing import parse as parse_python

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

_MAGIC_LINE = re.compile(r"^(\s*)(?:[%!]|\w+\s*=\s*[%!])")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?\??\s*$|^\s*\?\??[\w.]+\s*$")


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
            parse_python(source)
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
