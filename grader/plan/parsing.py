"""CPython's parser, entered by one thread at a time in the grader's process.

CPython 3.11 keeps the depth counter of its AST builder (``ast.parse``'s C-to-Python step)
in state shared by every thread of the interpreter. When two threads parse at once and the
builder gives up the GIL midway (a garbage collection that runs a finalizer is enough), one
of them fails with ``SystemError: AST constructor recursion depth mismatch``: a grader fault
out of nothing. It happened here when the two threads that run the reference's mistakes
parsed their edited copies together (CPython issue gh-106905 and the reports around it).

Every parse of Python source in the grader's process goes through ``parse``; the worker, one
thread in its own process, uses ``ast`` directly. ``tests/test_architecture.py`` holds that.
The lock is re-entrant, so a finalizer that parses while its own thread holds it cannot
deadlock.
"""
from __future__ import annotations

import ast
import threading

_lock = threading.RLock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source, filename)``, never concurrently with another in this process."""
    with _lock:
        return ast.parse(source, filename)
