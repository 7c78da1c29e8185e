"""Reading submissions: notebooks of any nbformat version, .py files, IPython syntax."""
from __future__ import annotations

import json

import nbformat
import pytest

from grader.errors import SubmissionUnreadable, UsageError
from grader.plan.ipython import clean_ipython
from grader.plan.submission import read_submission


def _nb(cells, metadata=None, version=4):
    nb = nbformat.v4.new_notebook(metadata=metadata or {})
    nb.cells = [nbformat.v4.new_markdown_cell(c[1:]) if c.startswith("#md") else nbformat.v4.new_code_cell(c)
                for c in cells]
    return nb


def test_notebook_cells_are_numbered_like_the_notebook(tmp_path):
    path = tmp_path / "s.ipynb"
    nbformat.write(_nb(["#md title", "import torch", "#md more", "x = 1"], {"grader": {"assignment": "mha"}}), path)
    sub = read_submission(path)
    assert [(u.index, u.label) for u in sub.units] == [(2, "cell 2"), (4, "cell 4")]
    assert sub.assignment == "mha"


def test_nbformat_v3_is_upgraded(tmp_path):
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {},
          "worksheets": [{"cells": [{"cell_type": "code", "input": "a = 1\n", "language": "python",
                                     "outputs": [], "prompt_number": 1}]}]}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3))
    sub = read_submission(path)
    assert [u.source for u in sub.units] == ["a = 1\n"]


@pytest.mark.parametrize("content, words", [
    (b"", "empty"), (b"{not json", "not a valid notebook"), (b'{"a": 1}', "not a Jupyter notebook"),
])
def test_unreadable_notebooks_say_why(tmp_path, content, words):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionUnreadable, match=words):
        read_submission(path)


def test_non_utf8_python_file(tmp_path):
    path = tmp_path / "s.py"
    path.write_bytes(b"x = '\xff\xfe'\n")
    with pytest.raises(SubmissionUnreadable, match="not UTF-8"):
        read_submission(path)


def test_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_submission(tmp_path / "nope.ipynb")
    with pytest.raises(UsageError, match="directory"):
        read_submission(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="expected a .ipynb"):
        read_submission(tmp_path / "a.txt")


@pytest.mark.parametrize("source, expected", [
    ("%matplotlib inline\nimport torch", "pass\nimport torch"),
    ("!pip install x\nfor i in range(2):\n    !echo hi\nfiles = !ls", "pass\nfor i in range(2):\n    pass\npass"),
    ("%%bash\nls -la", None),
    ("%%time\nx = 1", "pass\nx = 1"),
    ("y = (3\n     % 2)", "y = (3\n     % 2)"),  # plain Python stays untouched
])
def test_clean_ipython(source, expected):
    assert clean_ipython(source) == expected


def test_cells_with_an_execution_count_also_show_jupyters_prompt(tmp_path):
    nb = _nb(["#md title", "import torch", "#md more", "x = 1", "y = 2", "z = 3", "w = 4", "v = 5"])
    counts = [None, 3, None, 1, None, "7", 2.0, True]  # only a whole number is a count
    for cell, count in zip(nb.cells, counts):
        if cell.cell_type == "code":
            cell.execution_count = count
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(nb))  # as written, not validated: a count may be of any type
    labels = [u.label for u in read_submission(path).units]
    assert labels == ["cell 2 (In [3])", "cell 4 (In [1])", "cell 5", "cell 6", "cell 7", "cell 8"]


def test_a_markdown_cells_count_field_is_ignored_and_a_v3_prompt_number_is_read(tmp_path):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "source": "# t", "metadata": {}, "execution_count": 9},
        {"cell_type": "code", "source": "a = 1", "metadata": {}, "outputs": [], "execution_count": 12}]}
    (tmp_path / "v4.ipynb").write_text(json.dumps(nb))
    assert [u.label for u in read_submission(tmp_path / "v4.ipynb").units] == ["cell 2 (In [12])"]
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [
        {"cell_type": "markdown", "source": "# t"},
        {"cell_type": "code", "input": "a = 1\n", "language": "python", "outputs": [], "prompt_number": 4}]}]}
    (tmp_path / "v3.ipynb").write_text(json.dumps(v3))
    assert [u.label for u in read_submission(tmp_path / "v3.ipynb").units] == ["cell 2 (In [4])"]


def test_a_deep_or_huge_count_is_skipped_within_the_scanners_bounds(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    text = ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ['
            f'{{"cell_type": "code", "source": "a = 1", "metadata": {{}}, "outputs": [], "execution_count": {deep}}},'
            '{"cell_type": "code", "source": "b = 1", "metadata": {}, "outputs": [], "execution_count": 99999999999}]}')
    (tmp_path / "odd.ipynb").write_text(text)
    assert [u.label for u in read_submission(tmp_path / "odd.ipynb").units] == ["cell 1", "cell 2"]


def test_a_line_named_in_a_labelled_cell_keeps_its_code(tmp_path):
    from grader.plan.slicing import parse_units
    from grader.model.messages import unit_error_text

    nb = _nb(["#md t", "x = (1,"])
    nb.cells[1].execution_count = 5
    path = tmp_path / "s.ipynb"
    nbformat.write(nb, path)
    error = parse_units(read_submission(path).units).syntax_errors[0]
    assert unit_error_text(error.fact()).startswith("SyntaxError in cell 2 (In [5]), line 1: `x = (1,`")


# --- a kernel's input history ----------------------------------------------------------------


def test_history_inputs_become_units_labelled_by_their_prompt():
    from grader.plan.submission import history_units

    history = ["", "import torch", "%matplotlib inline\nx = 1", "from grader import check", "", "check()",
               "y = 2\ncheck()", "%%bash\nls", "z = 3\nr = check()\nw = 4"]
    units = history_units(history, current=8)
    assert [(u.index, u.label, u.source) for u in units] == [
        (1, "In [1]", "import torch"), (2, "In [2]", "pass\nx = 1"), (6, "In [6]", "y = 2\ncheck()"),
        (8, "In [8]", "z = 3")]  # what follows check() in the running input has not run yet


def test_inputs_that_only_use_the_grader_are_left_out():
    from grader.plan.submission import history_units

    history = ["", "import grader\nfrom grader.local import check\n", "grader.check(assignment='mha')",
               "print(check())", "r = check(show=False)\n\npass", "from grader import check; check()"]
    assert history_units(history, current=5) == ()


def test_an_input_that_cannot_be_parsed_stays_for_the_slicer_to_explain():
    from grader.plan.slicing import parse_units
    from grader.plan.submission import history_units

    units = history_units(["", "class A:\n    x = (1,\n", "class A:\n    x = 1\n"])
    parsed = parse_units(units)
    assert [u.label for u in units] == ["In [1]", "In [2]"]
    assert parsed.syntax_errors[0].unit.label == "In [1]"


def test_the_last_input_to_define_a_name_wins_as_in_a_file():
    from grader.plan.slicing import parse_units, slice_for
    from grader.plan.submission import history_units

    history = ["", "import torch", "class A:\n    v = 1\n", "class B:\n    pass\n", "class A:\n    v = 2\n",
               "a = A()"]
    sliced = slice_for(parse_units(history_units(history)), ["A"])
    assert sliced.definitions["A"].unit.label == "In [4]"
    assert [s.unit.label for s in sliced.statements] == ["In [4]"]


def test_a_history_beyond_the_code_cap_is_refused():
    from grader.plan.limits import MAX_CODE_BYTES
    from grader.plan.submission import history_units

    with pytest.raises(SubmissionUnreadable, match="restart the kernel"):
        history_units(["", "x = 1\n" * (MAX_CODE_BYTES // 6 + 1)])
