#!/usr/bin/env python
"""Hostile submissions against the grader's own process: time and peak memory of reading and slicing.

Every input is generated in a temporary folder, then handed to a FRESH subprocess of the
same interpreter that does what the grader's parent does with a submission before any
worker runs: ``read_submission`` -> ``parse_units`` -> ``slice_for`` (the graded names) ->
``forbidden_uses`` on the slice -> ``class_names``. The child reports its own peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, interpreter and imports included) and the
seconds its grader work took; the whole subprocess is timed with ``time.perf_counter``
around ``subprocess.run``, by a small launcher process (see "measuring" below). Baseline:
``python -c "import json"`` started the same way in the same run (median of 5); every wall
time is also printed as a ratio to it.

The bound to meet, for every input up to 100 MB: answered (a slice, or refused as
unreadable with a reason) within 10 s and 500 MB of peak memory.

    python benchmarks/bench_plan.py [--only SUBSTRING ...] [--keep]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grader.plan.limits import MAX_CODE_BYTES  # noqa: E402

MB = 1 << 20
BIG = 100 * MB
TIME_LIMIT_S, RSS_LIMIT_MB = 10.0, 500.0
FILLED = REPO / "tests" / "submissions" / "mha" / "filled.ipynb"
NAMES = ["A", "ScaledDotProductAttention", "MultiHeadAttention"]

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from grader.errors import SubmissionUnreadable
from grader.plan.policy import forbidden_uses
from grader.plan.slicing import parse_units, slice_for
from grader.plan.submission import read_submission
names = json.loads(sys.argv[2])
work = time.perf_counter()
try:
    sub = read_submission(sys.argv[1])
    parsed = parse_units(sub.units)
    sl = slice_for(parsed, names)
    found = forbidden_uses(sl.statements, ("torch.nn.LSTMCell", "torch._VF"))
    classes = parsed.class_names()
    outcome = (f"slice of {len(sl.statements)}/{len(parsed.statements)} statements, {len(sub.units)} units, "
               f"{len(parsed.syntax_errors)} unit(s) failed, {len(found)} policy finding(s)")
    detail = parsed.syntax_errors[0].describe() if parsed.syntax_errors else ""
except SubmissionUnreadable as e:
    outcome, detail = "unreadable", str(e)
done = time.perf_counter()
print(json.dumps({"outcome": outcome, "detail": detail, "work_s": done - work, "imports_s": work - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# ------------------------------------------------------------------ inputs

def _code_cell(source, outputs=None, metadata=None):
    return {"cell_type": "code", "execution_count": 1, "id": os.urandom(4).hex(), "metadata": metadata or {},
            "outputs": outputs or [], "source": source}


def _write_notebook(path: Path, cells, marker: str | None = None, filler=None) -> None:
    """Write a v4 notebook; if ``marker`` is given, the JSON string "marker" is replaced, streaming, by ``filler()``."""
    nb = {"cells": cells, "metadata": {"grader": {"assignment": "mha"}}, "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(nb)
    with open(path, "w", encoding="utf-8") as f:
        if marker is None:
            f.write(text)
            return
        head, tail = text.split(json.dumps(marker), 1)
        f.write(head)
        for piece in filler():
            f.write(piece)
        f.write(tail)


def _repeat(item: str, total: int, first: str = "[", last: str = "0]"):
    def gen():
        yield first
        chunk = item * (MB // len(item))
        for _ in range(total // len(chunk)):
            yield chunk
        yield last
    return gen


def _filled_cells():
    return [c for c in json.loads(FILLED.read_text())["cells"]]


def make_inputs(folder: Path) -> list[tuple[str, Path, list[str]]]:
    out = []

    def add(name, filename, names=NAMES):
        out.append((name, folder / filename, names))
        return folder / filename

    # honest
    out.append(("honest: tests/submissions/mha/filled.ipynb", FILLED, NAMES))
    # notebooks of 100 MB
    cells = _filled_cells()
    image = base64.b64encode(os.urandom(5 * MB)).decode()
    for c in cells:
        if c["cell_type"] == "code":
            c["outputs"] = [{"output_type": "display_data", "metadata": {}, "data": {"image/png": image}}] * 4
    _write_notebook(add("100 MB of image outputs (.ipynb)", "images.ipynb"), cells)
    cells = _filled_cells()
    cells.append(_code_cell("print('log')", [{"output_type": "stream", "name": "stdout", "text": "MARK"}]))
    _write_notebook(add("100 MB text output, one emoji (UCS-4 trap)", "emoji.ipynb"), cells, "MARK",
                    lambda: iter(['"' + "a" * (BIG // 2)] + ["\U0001F600"] + ["b" * (BIG // 2) + '"']))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", metadata={"big": "MARK"}))
    _write_notebook(add("100 MB of [0,0,...] in a cell's metadata", "zeros.ipynb"), cells, "MARK", _repeat("0,", BIG))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", [{"output_type": "stream", "name": "stdout", "text": "MARK"}]))
    _write_notebook(add('100 MB of ["a","a",...] in outputs (25M lines)', "strings.ipynb"), cells, "MARK",
                    _repeat('"a",', BIG, "[", '"a"]'))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", [{"output_type": "display_data", "metadata": {}, "data": {"x": "MARK"}}]))
    _write_notebook(add("100 MB of [[],[],...] in outputs", "lists.ipynb"), cells, "MARK", _repeat("[],", BIG))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", metadata={"big": "MARK"}))
    _write_notebook(add('100 MB of {"a":0},... in a cell\'s metadata', "objects.ipynb"), cells, "MARK",
                    _repeat('{"a":0},', BIG))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", [{"output_type": "stream", "name": "stdout", "text": "MARK"}]))
    _write_notebook(add('100 MB of escapes \\" \\\\ in an output string', "escapes.ipynb"), cells, "MARK",
                    _repeat('\\"\\\\', BIG, '"', '"'))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", metadata={"big": "MARK"}))
    _write_notebook(add("100,000 nested lists in a cell's metadata", "nested.ipynb"), cells, "MARK",
                    lambda: iter(["[" * 100_000 + "]" * 100_000]))
    cells = _filled_cells()
    cells.append(_code_cell("x = 1", metadata={"big": "MARK"}))
    _write_notebook(add("100 MB of nested lists [[[[...]]]] in metadata", "nested-100mb.ipynb"), cells, "MARK",
                    lambda: iter(["[" * (BIG // 2) + "]" * (BIG // 2)]))
    # .py of 100 MB (real bytes, not sparse)
    with open(add("100 MB .py file", "huge.py"), "w") as f:
        line = "x = 1\n" * (MB // 6)
        for _ in range(BIG // len(line) + 1):
            f.write(line)
    # code just under the cap
    def under_cap(line_of, start=0):
        lines, size, i = [], 0, start
        while True:
            line = line_of(i)
            if size + len(line) > MAX_CODE_BYTES - 200:
                return "".join(lines)
            lines.append(line)
            size += len(line)
            i += 1
    cap = f"{MAX_CODE_BYTES // 1024} KB cap"
    add(f"one-line statements x=1, just under the {cap} (.py)", "oneliners.py").write_text(
        under_cap(lambda i: "x=1\n") + "class A:\n    pass\n")
    src = under_cap(lambda i: f"x{i}=1\n")
    _write_notebook(add("one-line statements x_i=1 under the cap, one cell (.ipynb)", "oneliners.ipynb"),
                    [_code_cell(src), _code_cell("class A:\n    pass\n")])
    add("one-line `def f_i(): pass` under the cap (.py)", "defs.py").write_text(
        under_cap(lambda i: f"def f_{i}(): pass\n") + "class A:\n    pass\n")
    add("`x=1;` statements on ONE line under the cap (.py)", "semicolons.py").write_text(
        under_cap(lambda i: "x=1;")[:-1] + "\nclass A:\n    pass\n")
    chain = "import torch\nimport torch.nn as nn\nx0 = 0\n" + under_cap(lambda i: f"x{i + 1} = torch.f(x{i})\n")
    last = chain.rstrip().rsplit("\n", 1)[1].split(" =")[0]
    add("dependency chain x_i = torch.f(x_i-1) under the cap, all sliced (.py)", "chain.py").write_text(
        chain + f"class A(nn.Module):\n    def f(self):\n        return nn.LSTMCell({last})\n")
    add("one literal x = [0, 0, ...] under the cap (.py)", "literal.py").write_text(
        "x = [" + "0," * ((MAX_CODE_BYTES - 400) // 2) + "]\nclass A:\n    pass\n")
    cells = [_code_cell(f"v{i} = {i}\n") for i in range(9_999)] + [_code_cell("class A:\n    pass\n")]
    _write_notebook(add("10,000 code cells (the cell cap)", "cells.ipynb"), cells)
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": f"v{i} = {i}\n", "language": "python", "outputs": [], "metadata": {}}
        for i in range(10_000)]}]}
    add("10,000 code cells, nbformat 3 (upgraded and validated by nbformat)", "cells-v3.ipynb").write_text(json.dumps(v3))
    cells = _filled_cells()
    plot = base64.b64encode(os.urandom(30_000)).decode()
    for i in range(1000):
        cells.append(_code_cell(f"plt.plot(x{i})\nplt.show()", [
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": plot, "text/plain": ["<Figure>"]}},
            {"output_type": "stream", "name": "stdout", "text": ["epoch 1 loss 0.5\n"] * 50}]))
    _write_notebook(add("honest but big: 1,000 cells, each a plot and a log", "plots.ipynb"), cells)
    # deep code
    add("100,000 chained + (.py)", "plus.py").write_text(
        "x = " + "+".join(["1"] * 100_000) + "\nclass A:\n    pass\n")
    add("50,000 unary - (.py)", "unary.py").write_text("x = " + "-" * 50_000 + "1\nclass A:\n    pass\n")
    _write_notebook(add("1,500-name attribute chain in one cell (.ipynb)", "attrs.ipynb"),
                    [_code_cell("import torch\nimport torch.nn as nn"), _code_cell("x = nn" + ".a" * 1500),
                     _code_cell("class A:\n    pass\n")])
    return out


# ------------------------------------------------------------------ measuring
#
# On Linux a child's ru_maxrss starts from the peak of the memory it was forked (or vforked)
# from, so a child started by this (big, input-generating) script would report this script's
# peak. Each measured command is therefore started by a small launcher process: the child's
# getrusage then counts only itself. The launcher times the child with perf_counter.

LAUNCHER = """
import json, subprocess, sys, time
start = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"wall": time.perf_counter() - start, "rc": p.returncode, "out": p.stdout, "err": p.stderr[-3000:]}))
"""


def run_child(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    p = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, *args], capture_output=True, text=True,
                       cwd=REPO, timeout=600, check=True)
    r = json.loads(p.stdout)
    return r["wall"], subprocess.CompletedProcess(args, r["rc"], r["out"], r["err"])


def baseline() -> tuple[float, float]:
    code = "import json, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    runs = [run_child(["-c", code]) for _ in range(6)][1:]
    return statistics.median(t for t, _ in runs), statistics.median(float(p.stdout) for _, p in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run only inputs whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs (their folder is printed)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    try:
        print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs; inputs in {folder}")
        t0 = time.perf_counter()
        inputs = make_inputs(folder)
        print(f"generated {len(inputs)} inputs in {time.perf_counter() - t0:.1f} s\n")
        base_s, base_mb = baseline()
        print(f'baseline  python -c "import json": {base_s:.3f} s wall, {base_mb:.0f} MB peak RSS (median of 5)\n')
        header = f"{'input':<70} {'size':>9} {'wall s':>7} {'x json':>7} {'work s':>7} {'RSS MB':>7}  ok  outcome"
        print(header)
        print("-" * len(header))
        worst_t = worst_m = 0.0
        failures = 0
        for name, path, names in inputs:
            if args.only and not any(o in name for o in args.only):
                continue
            wall, p = run_child(["-c", CHILD, str(path), json.dumps(names)])
            size = path.stat().st_size
            if p.returncode != 0:
                failures += 1
                print(f"{name:<70} {size / MB:>7.1f}MB  CRASH rc={p.returncode}: {p.stderr.strip()[-300:]}")
                continue
            r = json.loads(p.stdout)
            ok = wall < TIME_LIMIT_S and r["rss_mb"] < RSS_LIMIT_MB
            failures += not ok
            worst_t, worst_m = max(worst_t, wall), max(worst_m, r["rss_mb"])
            print(f"{name:<70} {size / MB:>7.1f}MB {wall:>7.2f} {wall / base_s:>7.1f} {r['work_s']:>7.2f} "
                  f"{r['rss_mb']:>7.0f}  {'yes' if ok else 'NO '} {r['outcome']}")
            if r["detail"]:
                print(f"{'':<70}   -> {r['detail'][:150]}")
        print(f"\nworst: {worst_t:.2f} s wall ({worst_t / base_s:.1f} x import json), {worst_m:.0f} MB peak RSS; "
              f"limits {TIME_LIMIT_S:.0f} s and {RSS_LIMIT_MB:.0f} MB: {'met' if not failures else f'{failures} OVER'}")
        return 1 if failures else 0
    finally:
        if args.keep:
            print(f"inputs kept in {folder}")
        else:
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
