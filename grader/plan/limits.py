"""How much of a submission the grader reads: the caps every reader checks before parsing.

Submissions are untrusted and read in the grader's own process; each cap bounds a cost that
would otherwise grow with what a student hands in (measurements: ``benchmarks/bench_plan.py``).
"""
from __future__ import annotations

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
