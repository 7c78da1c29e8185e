"""Broken files end in a report with score 0 and one sentence (exit 1) or a usage error (exit 2)."""
from __future__ import annotations

import base64
import json
import os
import time

import nbformat
import pytest

from conftest import ROOT, course, run_grade
from grader.course.assignments import get_assignment

MHA_MAX = get_assignment(course(), "mha").max_score

FILLED = ROOT / "tests" / "submissions" / "mha" / "filled.ipynb"


def _invalid_json(p):
    p.write_text('{"cells": [')


def _zero_bytes(p):
    p.write_bytes(b"")


def _garbage(p):
    p.write_bytes(os.urandom(4096))


def _empty_notebook(p):
    nbformat.write(nbformat.v4.new_notebook(metadata={"grader": {"assignment": "mha"}}), p)


def _markdown_only(p):
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "mha"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# My answers\nI ran out of time.")]
    nbformat.write(nb, p)


def _sparse(size):
    def write(p):
        with open(p, "wb") as f:
            f.truncate(size)
    return write


def _cells_not_objects(p):
    p.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"grader": {"assignment": "mha"}},
                             "cells": [1, "x = 1"]}))


def _million_brackets(p):
    nb = nbformat.read(FILLED, as_version=4)
    nb.metadata["junk"] = "MARK"
    nbformat.write(nb, p)
    p.write_text(p.read_text().replace('"MARK"', "[" + "[]," * 1_100_000 + "[]]"))


def _link_to_the_reference(p):
    os.symlink(ROOT / "reference" / "mha.ipynb", p)  # a link a repository or a zip upload can carry


def _dangling_link(p):
    os.symlink(p.parent / "gone.ipynb", p)


def _fifo(p):
    os.mkfifo(p)


CASES = {  # name: (file name, writer, expected exit code, words in the reason)
    "symlink to the reference": ("s.ipynb", _link_to_the_reference, 1,
                                 "s.ipynb is a symbolic link, not a file; the grader never follows a link"),
    "dangling symlink": ("s.ipynb", _dangling_link, 1, "s.ipynb is a symbolic link, not a file"),
    "fifo": ("s.ipynb", _fifo, 1, "s.ipynb is not a regular file"),
    "invalid json": ("s.ipynb", _invalid_json, 1, "not a valid notebook"),
    "zero bytes": ("s.ipynb", _zero_bytes, 1, "is empty"),
    "binary garbage": ("s.ipynb", _garbage, 1, "not a valid notebook"),
    "empty notebook": ("s.ipynb", _empty_notebook, 1, "has no code cells"),
    "markdown only": ("s.ipynb", _markdown_only, 1, "has no code cells"),
    "non-utf8 py": ("s.py", lambda p: p.write_bytes(b"x = '\xff'\nclass LSTMCell: pass\n"), 1, "not UTF-8"),
    "binary py": ("s.py", lambda p: p.write_bytes(b"\x00\x01\x02"), 1, "binary data"),
    "py of 100 MB": ("s.py", _sparse(100 << 20), 1, "s.py holds 100 MB of code; the grader reads at most 256 KB"),
    "notebook of 300 MB": ("s.ipynb", _sparse(300 << 20), 1, "s.ipynb is 300 MB; the grader reads notebooks of at most"),
    "cells not objects": ("s.ipynb", _cells_not_objects, 1, "could not be read as a notebook: cell 1 is not a JSON"),
    "a million brackets": ("s.ipynb", _million_brackets, 1, "holds more than 1,000,000 JSON lists"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file(tmp_path, name):
    filename, write, code, words = CASES[name]
    path = tmp_path / filename
    write(path)
    p = run_grade(str(path), "--assignment", "mha", "--format", "gradescope")
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    data = json.loads(p.stdout)
    assert data["score"] == 0 and data["max_score"] == MHA_MAX and words in data["output"]


def test_without_assignment_a_broken_file_is_still_a_report(tmp_path):
    path = tmp_path / "s.ipynb"
    path.write_text("nope")
    p = run_grade(str(path), "--format", "json")
    assert p.returncode == 1 and json.loads(p.stdout)["problem"].startswith("s.ipynb is not a valid notebook")


def test_directory_and_missing_path_are_usage_errors(tmp_path):
    for arg in (str(tmp_path), str(tmp_path / "nope.ipynb")):
        p = run_grade(arg)
        assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.startswith("grade: error:")


def test_nbformat_v3_is_upgraded_and_graded(tmp_path):
    nb4 = nbformat.read(FILLED, as_version=4)
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "s"}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": c.source, "language": "python", "outputs": [], "collapsed": False}
        if c.cell_type == "code" else {"cell_type": "markdown", "source": c.source}
        for c in nb4.cells]}]}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(v3))
    p = run_grade(str(path), "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["score"] == MHA_MAX


def test_tens_of_megabytes_of_images_still_grade_in_seconds(tmp_path):
    nb = nbformat.read(FILLED, as_version=4)
    image = base64.b64encode(os.urandom(5_000_000)).decode()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": image})]
    path = tmp_path / "big.ipynb"
    nbformat.write(nb, path)
    assert path.stat().st_size > 30e6
    start = time.perf_counter()
    p = run_grade(str(path), "--format", "json")
    assert p.returncode == 0 and json.loads(p.stdout)["score"] == MHA_MAX
    assert time.perf_counter() - start < 15


def test_deep_json_and_a_deep_expression_still_grade(tmp_path):
    """Nested JSON outside the code is skipped; a cell nested too deeply fails alone, with a note."""
    nb = nbformat.read(FILLED, as_version=4)
    for cell in nb.cells:
        cell.metadata["junk"] = "MARK"
    nb.cells.append(nbformat.v4.new_code_cell("y = " + "-" * 50_000 + "1"))
    path = tmp_path / "deep.ipynb"
    nbformat.write(nb, path)
    path.write_text(path.read_text().replace('"MARK"', "[" * 100_000 + "]" * 100_000))
    p = run_grade(str(path), "--format", "gradescope")
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(p.stdout)
    assert data["score"] == MHA_MAX
    assert f"cell {len(nb.cells)}, line 1" in data["output"] and "levels deep; the grader reads at most 500" in data["output"]
