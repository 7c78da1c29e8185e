"""Hostile inputs to reading, slicing and the policy walker: bounded time, memory and depth.

The 100 MB measurements are in benchmarks/bench_plan.py; here smaller inputs prove the
shape: time for n and 8n grows far less than 64-fold (not quadratic), memory stays flat in a
fresh subprocess, and deep code or JSON gives a clean result instead of RecursionError.
"""
from __future__ import annotations

import builtins
import gc
import json
import pathlib
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest

from conftest import ROOT
from grader.plan.plan import missing_cause
from grader.model.messages import cause_reason, missing_explanation, problem_text
from grader.errors import SubmissionUnreadable
from grader.plan import limits, slicing, submission
from grader.plan.policy import forbidden_uses
from grader.plan.slicing import Statement, UnitSyntaxError, parse_units, slice_for
from grader.plan.submission import SourceUnit, read_submission


@pytest.fixture(autouse=True)
def _cpython_default_recursion_limit():
    """Where CPython's own parser gives up depends on the recursion limit; these tests pin the default
    (IPython, imported by another test in this process, raises it to 3000). The grader is right under
    both; only which of its answers applies differs."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(before)

FORBID = ("torch.nn.LSTMCell",)


def _units(*cells):
    return [SourceUnit(i, f"cell {i}", src) for i, src in enumerate(cells, start=1)]


#: Inputs grow 8-fold: linear code takes about 8 times as long (up to twice that when the
#: larger input no longer fits in the CPU's caches), quadratic code 64 times.
GROWTH, LINEAR = 8, 32


def _growth(run, small, large, floor=0.02):
    """time(run(large)) / time(run(small)), each the best of 3, repeated to last >= ``floor`` s, GC off."""
    def best(arg, number):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(number):
                run(arg)
            times.append(time.perf_counter() - start)
        return min(times)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run(small)
        once = time.perf_counter() - start
        number = max(1, int(floor / max(once, 1e-6)))
        return best(large, number) / best(small, number)
    finally:
        gc.enable()


def _notebook(cells, metadata=None):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": cells}


def _code(source, **extra):
    return {"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None, **extra}


# ------------------------------------------------------------------ 1. linear slicing

def _chain(n, comment=""):
    lines = ["import torch"] + [f"x{i} = torch.f(x{i - 1}){comment}" for i in range(1, n)]
    lines.append(f"class A:\n    def f(self):\n        return torch.g(x{n - 1})")
    return parse_units(_units("x0 = 0", "\n".join(lines)))


def test_slice_for_is_not_quadratic():
    small, large = _chain(1000), _chain(1000 * GROWTH)
    assert len(slice_for(large, ["A"]).statements) == 1000 * GROWTH + 2
    assert _growth(lambda p: slice_for(p, ["A"]), small, large) < LINEAR


def test_policy_is_not_quadratic():
    comment = "  # " + "c" * 100  # the old walker split the whole cell into lines once per statement
    small, large = (slice_for(_chain(n, comment), ["A"]).statements for n in (1000, 1000 * GROWTH))
    assert _growth(lambda st: forbidden_uses(st, FORBID), small, large) < LINEAR


def test_statements_sharing_a_line_are_parsed_in_linear_time():
    def run(n):
        return parse_units(_units("; ".join(f"x{i} = {i}" for i in range(n))))
    parsed = run(3)
    assert [(s.lineno, s.source, sorted(s.defines)) for s in parsed.statements] == [
        (1, "x0 = 0", ["x0"]), (1, "x1 = 1", ["x1"]), (1, "x2 = 2", ["x2"])]
    assert _growth(run, 200, 200 * GROWTH) < LINEAR


def test_statements_sharing_a_line_get_their_own_source():
    parsed = parse_units(_units("import torch; import numpy as np\ns = 'é'; t = ('ü',\n  2)  # c\nu = 1"))
    assert [(s.lineno, s.source) for s in parsed.statements] == [
        (1, "import torch"), (1, "import numpy as np"), (2, "s = 'é'"), (2, "t = ('ü',\n  2)"), (4, "u = 1")]
    assert [s.source for s in slice_for(parsed, ["np"]).statements] == ["import numpy as np"]


def test_class_names_and_missing_reasons_are_linear_on_blank_lines():
    def parsed(n):
        return parse_units(_units("\n" * n + "x = (", "y = 1"))
    small, large = parsed(10_000), parsed(10_000 * GROWTH)
    assert large.class_names() == set()
    assert _growth(lambda p: (p.class_names(), slice_for(p, ["A"])), small, large) < LINEAR


# ------------------------------------------------------------------ 2. size caps

def _no_reading(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the file was read")
    monkeypatch.setattr(pathlib.Path, "read_bytes", boom)
    monkeypatch.setattr(pathlib.Path, "read_text", boom)
    monkeypatch.setattr(pathlib.Path, "open", boom)
    monkeypatch.setattr(builtins, "open", boom)


def test_a_py_file_over_the_cap_is_refused_from_its_size(tmp_path, monkeypatch):
    path = tmp_path / "s.py"
    with open(path, "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MB on paper, nothing on disk
    with monkeypatch.context() as m:
        _no_reading(m)
        with pytest.raises(SubmissionUnreadable) as e:
            read_submission(path)
    message = str(e.value)
    assert "s.py holds 100 MB of code" in message and "at most 256 KB" in message
    assert "Remove large pasted data" in message


def test_a_py_file_at_the_cap_is_read_and_one_byte_more_is_not(tmp_path):
    cap = limits.MAX_CODE_BYTES
    path = tmp_path / "s.py"
    path.write_bytes(b"x = 1\n" + b"#" * (cap - 7) + b"\n")
    assert len(read_submission(path).units[0].source) == cap
    path.write_bytes(b"x = 1\n" + b"#" * (cap - 6) + b"\n")
    with pytest.raises(SubmissionUnreadable, match="of code"):
        read_submission(path)


def test_a_notebook_whose_code_is_over_the_cap_is_unreadable(tmp_path):
    path = tmp_path / "s.ipynb"
    big = "x = [" + "0, " * (200 * 1024 // 3) + "]\n"
    path.write_text(json.dumps(_notebook([_code(big), {"cell_type": "markdown", "source": big, "metadata": {}},
                                          _code(big.splitlines(keepends=True))])))
    with pytest.raises(SubmissionUnreadable) as e:
        read_submission(path)
    assert "s.ipynb holds 400 KB of code" in str(e.value) and "pasted data" in str(e.value)


def test_a_notebook_over_the_file_cap_is_refused_from_its_size(tmp_path, monkeypatch):
    path = tmp_path / "s.ipynb"
    with open(path, "wb") as f:
        f.truncate(limits.MAX_NOTEBOOK_BYTES + 1)
    with monkeypatch.context() as m:
        _no_reading(m)
        with pytest.raises(SubmissionUnreadable, match="Clear all outputs"):
            read_submission(path)


def test_caps_are_documented():
    """Each cap in grader/plan/limits.py is an int with its attribute docstring (what it bounds and why that
    size), as the module's own syntax tree has it; and the scanner reads the caps from there."""
    import ast

    from grader.plan import limits, notebook_scan

    tree = ast.parse(pathlib.Path(limits.__file__).read_text())
    documented = {}
    for node, after in zip(tree.body, tree.body[1:]):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            doc = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else None
            documented[node.targets[0].id] = doc
    for name in ("MAX_CODE_BYTES", "MAX_NOTEBOOK_BYTES", "MAX_NOTEBOOK_NODES", "MAX_CELLS"):
        assert isinstance(getattr(limits, name), int) and isinstance(documented.get(name), str), name
        assert len(documented[name].split()) >= 8, name  # a sentence, not a label
    assert notebook_scan.MAX_CELLS is limits.MAX_CELLS and submission.MAX_CODE_BYTES is limits.MAX_CODE_BYTES
    assert isinstance(slicing.MAX_AST_DEPTH, int)


_CHILD = textwrap.dedent("""
    import json, resource, sys
    from grader.errors import SubmissionUnreadable
    from grader.plan.slicing import parse_units, slice_for
    from grader.plan.submission import read_submission
    try:
        parsed = parse_units(read_submission(sys.argv[1]).units)
        outcome = f"read: {len(slice_for(parsed, ['A']).statements)} statements"
    except SubmissionUnreadable as e:
        outcome = f"unreadable: {e}"
    print(json.dumps({"outcome": outcome, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


# A child's ru_maxrss starts from the peak of the process it was (v)forked from: started from
# pytest it would count pytest's memory. A small launcher in between keeps the count its own.
_LAUNCHER = "import subprocess, sys; p = subprocess.run(sys.argv[1:]); sys.exit(p.returncode)"


def _in_a_fresh_process(path):
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _CHILD, str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


@pytest.mark.parametrize("shape", ["zeros in metadata", "empty lists in outputs", "empty objects in metadata",
                                   "short strings in outputs"])
def test_20_mb_of_tiny_json_values_is_bounded_in_memory(tmp_path, shape):
    size = 20 << 20
    item = {"zeros in metadata": "0,", "empty lists in outputs": "[],", "empty objects in metadata": "{},",
            "short strings in outputs": '"a",'}[shape]
    values = "[" + item * (size // len(item)) + "0]"
    where = "outputs" if "outputs" in shape else "metadata"
    cell = _code("class A:\n    pass\n")
    text = json.dumps(_notebook([cell])).replace(f'"{where}": []' if where == "outputs" else '"metadata": {}',
                                                f'"{where}": {values}' if where == "outputs" else
                                                f'"metadata": {{"x": {values}}}', 1)
    path = tmp_path / "s.ipynb"
    path.write_text(text)
    assert path.stat().st_size > size
    result = _in_a_fresh_process(path)
    assert result["rss_mb"] < 300, result
    if "lists" in shape or "objects" in shape:  # a million brackets and more: refused, not built
        assert result["outcome"].startswith("unreadable: s.ipynb holds more than 1,000,000 JSON lists"), result
    else:  # numbers and strings are skipped without a Python step each
        assert result["outcome"] == "read: 1 statements", result


# ------------------------------------------------------------------ 3. depth: JSON

def _nested(n):
    return "[" * n + "]" * n


@pytest.mark.parametrize("where", ["cell metadata", "outputs", "notebook metadata", "grader metadata", "extra field"])
def test_deeply_nested_json_outside_the_code_is_skipped(tmp_path, where):
    deep = _nested(100_000)
    cell = _code("class A:\n    pass\n")
    nb = _notebook([cell], {"grader": {"assignment": "mha"}})
    text = json.dumps(nb)
    marker = '"cell_type": "code"'
    insert = {"cell metadata": f'"metadata": {{"x": {deep}}}, ', "outputs": f'"outputs": [{deep}], ',
              "extra field": f'"x": {deep}, ', "notebook metadata": "", "grader metadata": ""}[where]
    text = text.replace(marker, insert + marker, 1)
    if where == "notebook metadata":
        text = text.replace('"metadata": {"grader"', f'"metadata": {{"x": {deep}, "grader"', 1)
    if where == "grader metadata":
        text = text.replace('"assignment": "mha"', f'"x": {deep}, "assignment": "mha"', 1)
    path = tmp_path / "s.ipynb"
    path.write_text(text)
    sub = read_submission(path)
    assert [u.source for u in sub.units] == ["class A:\n    pass\n"] and sub.assignment == "mha"


def test_deeply_nested_json_where_code_or_the_assignment_belongs(tmp_path):
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(_notebook([_code("x = 1")], {"grader": {"assignment": "mha"}}))
                    .replace('"mha"', _nested(100_000)))
    assert read_submission(path).assignment is None
    path.write_text(json.dumps(_notebook([_code("x = 1")])).replace('"x = 1"', _nested(100_000)))
    with pytest.raises(SubmissionUnreadable, match="could not be read as a notebook: the code of cell 1 is not text"):
        read_submission(path)


@pytest.mark.parametrize("cells, words", [
    ([1, "x"], "cell 1 is not a JSON object"),
    ([_code(["x = 1\n", 2])], "the code of cell 1 is not text"),
    ({"a": 1}, "its 'cells' field is not a list"),
])
def test_cells_of_the_wrong_type_are_unreadable(tmp_path, cells, words):
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(_notebook(cells)))
    with pytest.raises(SubmissionUnreadable, match=words):
        read_submission(path)


def test_too_many_cells_are_refused(tmp_path):
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(_notebook([{"cell_type": "markdown", "source": "", "metadata": {}}]
                                         * (limits.MAX_CELLS + 1))))
    with pytest.raises(SubmissionUnreadable, match="has more than 10,000 cells"):
        read_submission(path)


def test_strings_with_escapes_and_brackets_read_like_nbformat(tmp_path):
    tricky = ['s = "]}\\\\"  # a ] and a } and a backslash\n', 'q = "\\"[{"\n', "t = '\\u00e9\\\\\\\\'\n"]
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "mha"}, "x": "\\\"]]}}\\"})
    nb.cells = [nbformat.v4.new_code_cell("".join(tricky)), nbformat.v4.new_markdown_cell('"]}\\'),
                nbformat.v4.new_code_cell("y = 2\n")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text='\\"[[[{{{\\\\\\"\n' * 50)]
    path = tmp_path / "s.ipynb"
    nbformat.write(nb, path)
    text = path.read_text().replace('"source"', '"\\u0073ource"', 1)  # an escaped field name
    path.write_text(text)
    expected = [(i, c.source) for i, c in enumerate(nbformat.read(path, as_version=4).cells, 1)
                if c.cell_type == "code"]
    sub = read_submission(path)
    assert [(u.index, u.source) for u in sub.units] == expected and sub.assignment == "mha"


@pytest.mark.parametrize("content, words", [
    (b'{"cells": [{"source": "x = 1\\"]}', "Unterminated string"),
    (b'{"cells": [[[[', "Unterminated array or object"),
    (b'{"nbformat": 4} {}', "Extra data"),
    (b'{"nbformat" 4}', "Expecting ':' delimiter"),
    (b'{"metadata": {"a": [1, 2}}', "Expecting ',' delimiter"),
])
def test_broken_json_says_what_and_where(tmp_path, content, words):
    path = tmp_path / "s.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionUnreadable, match=f"not a valid notebook file \\(not JSON: {words}.*line 1"):
        read_submission(path)


# ------------------------------------------------------------------ 3. depth: code

DEEP = {
    "100,000 chained +": "x = " + "+".join(["1"] * 100_000),
    "50,000 unary -": "x = " + "-" * 50_000 + "1",
    "3,000 not": "x = " + "not " * 3000 + "1",
    "1,000 chained + (CPython parses it)": "x = " + "+".join(["1"] * 1000),
    "1,500 attributes (CPython parses it)": "x = a" + ".b" * 1500,
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_a_deep_expression_fails_its_cell_only(name):
    parsed = parse_units(_units("import torch", "y = 1\n" + DEEP[name] + "\nz = 2", "class A:\n    pass"))
    sl = slice_for(parsed, ["A"])
    assert "A" in sl.definitions and not sl.missing
    [error] = parsed.syntax_errors
    assert isinstance(error, UnitSyntaxError) and isinstance(error, slicing.UnitTooDeep) and error.kind == "too_deep"
    assert error.unit.label == "cell 2" and error.lineno == 2
    message = error.describe()
    assert message.startswith("cell 2, line 2 (`x = ")
    assert "levels deep; the grader reads at most 500; split it into smaller statements" in message
    assert len(message) < 600
    if "CPython parses it" in name:
        assert "nested more than" not in message and "nested 1" in message


def test_a_deep_elif_chain_names_its_first_line():
    chain = "y = 1\n\nif a:\n    pass\n" + "elif a:\n    pass\n" * 3000 + "z = 3\n"
    [error] = parse_units(_units(chain)).syntax_errors
    assert isinstance(error, slicing.UnitTooDeep) and error.lineno == 3


def test_a_deep_expression_over_many_lines_names_its_first_line():
    spread = "x = 1\ny = (\n" + "-\n" * 20_000 + "1)\nz = 2\n"
    [error] = parse_units(_units(spread)).syntax_errors
    assert isinstance(error, slicing.UnitTooDeep) and error.lineno == 2 and "`y = (`" in error.describe()


def test_a_class_in_a_deep_cell_is_reported_missing_with_the_reason():
    parsed = parse_units(_units("class A:\n    v = " + "-" * 50_000 + "1"))
    sl = slice_for(parsed, ["A"])
    assert sl.missing == ("A",)
    cause = missing_cause(parsed, "A")
    assert cause_reason(cause, None) == "A's cell is nested too deeply to read (cell 1, line 2)"
    detail = missing_explanation(cause)
    assert detail.startswith("A: cell 1, line 2") and "split it into smaller statements" in detail
    assert parsed.class_names() == {"A"} and parsed.defining_error("A") is parsed.syntax_errors[0]


def test_code_within_the_depth_cap_is_read():
    parsed = parse_units(_units("x = " + "+".join(["1"] * 400), "if a:\n    pass\n" + "elif a:\n    pass\n" * 300))
    assert not parsed.syntax_errors and len(parsed.statements) == 2


def test_symtable_giving_up_fails_the_cell_only(monkeypatch):
    real = slicing.symtable.symtable

    def fussy(source, *args):
        if "deep" in source:
            raise RecursionError("maximum recursion depth exceeded during compilation")
        return real(source, *args)
    monkeypatch.setattr(slicing.symtable, "symtable", fussy)
    parsed = parse_units(_units("deep = 1", "class A:\n    pass"))
    assert [e.unit.label for e in parsed.syntax_errors] == ["cell 1"] and "A" in slice_for(parsed, ["A"]).definitions


def test_a_notebook_with_a_deep_cell_still_reads(tmp_path):
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(_notebook([_code(DEEP["50,000 unary -"]), _code("class A:\n    pass\n")])))
    parsed = parse_units(read_submission(path).units)
    assert [e.unit.label for e in parsed.syntax_errors] == ["cell 1"]
    assert "A" in slice_for(parsed, ["A"]).definitions


# ------------------------------------------------------------------ 3. depth: the policy walker

def _statement(position, source, uses=()):
    unit = SourceUnit(2, "cell 2", source)
    return Statement(position, unit, 1, source, frozenset(), frozenset(uses), frozenset())


@pytest.mark.parametrize("links", [1500, 2500])
def test_the_policy_walker_does_not_recurse_on_attribute_chains(links):
    head = _statement(0, "import torch.nn as nn")
    chain = _statement(1, "x = nn.LSTMCell" + ".a" * links, {"nn"})
    [found] = forbidden_uses((head, chain), FORBID)
    message = problem_text(found)
    assert message.startswith("cell 2, line 1: `x = nn.LSTMCell.a.a") and "uses torch.nn.LSTMCell.a.a" in message
    assert "which this exercise forbids (it forbids torch.nn.LSTMCell)" in message and len(message) < 8000


def test_the_policy_walker_skips_what_cpython_cannot_parse():
    head = _statement(0, "import torch.nn as nn")
    assert forbidden_uses((head, _statement(1, "x = nn.LSTMCell" + ".a" * 5000)), FORBID) == []


def test_the_policy_walker_follows_getattr_and_keeps_line_numbers():
    parsed = parse_units(_units("import torch\nimport torch.nn as nn\n\n\nclass Cell(nn.Module):\n"
                                "    def f(self):\n        return getattr(getattr(torch, 'nn'), 'LSTMCell')(1, 2)\n"))
    [found] = forbidden_uses(slice_for(parsed, ["Cell"]).statements, FORBID)
    message = problem_text(found)
    assert message.startswith("cell 1, line 7: `return getattr(getattr(torch, 'nn'), 'LSTMCell')(1, 2)` uses "
                              "torch.nn.LSTMCell")
