"""Reading submissions: notebooks of any nbformat version, .py files, IPython syntax."""
from __future__ import annotations

import json

import nbformat
import pytest

from grader.errors import SubmissionUnreadable, UsageError
from grader.plan.submission import clean_ipython, read_submission


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
