"""Golden text: every format of a few reports, compared with tests/golden/ exactly.

A change of wording or layout shows up here as a diff to review. To accept one, run
``GRADER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and read the diff of
tests/golden/ before committing it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from golden_reports import GRADED, SAMPLE, STUDENT_VIEWS, normalised
from grader.report.audience import for_audience
from grader import grade_submission
from grader.report.render import FORMATS, render, render_rich_text

GOLDEN = Path(__file__).parent / "golden"
EXTENSIONS = {"rich": "txt", "json": "json", "gradescope": "gradescope.json", "junit": "xml", "csv": "csv",
              "html": "html"}
UPDATE = os.environ.get("GRADER_UPDATE_GOLDEN") == "1"
#: The terminal report is pinned at the width it must read well at.
WIDTH = 80


def _text(report, fmt: str) -> str:
    if fmt == "rich":
        return render_rich_text(report, width=WIDTH)
    if fmt == "json":  # the facts' floats at full precision: pinned to 6 digits, as another CPU may round
        return json.dumps(_rounded(json.loads(render(report, fmt))), indent=2, ensure_ascii=False) + "\n"
    return render(report, fmt)


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def _compare(name: str, report) -> None:
    for fmt in FORMATS:
        path = GOLDEN / f"{name}.{EXTENSIONS[fmt]}"
        text = _text(report, fmt)
        if UPDATE:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            continue
        assert path.is_file(), f"{path} is missing; run GRADER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py"
        assert text == path.read_text(encoding="utf-8"), f"{name} as {fmt} differs from {path}"


def test_sample_report_in_every_format():
    _compare("sample", SAMPLE)
    _compare("sample.student", for_audience(SAMPLE, "student"))


@pytest.fixture(scope="module")
def graded():
    return {name: normalised(grade_submission(ROOT / path), path) for name, path in GRADED.items()}


@pytest.mark.parametrize("name", sorted(GRADED))
def test_graded_report_in_every_format(graded, name):
    _compare(name, graded[name])


@pytest.mark.parametrize("name", STUDENT_VIEWS)
def test_students_view_in_every_format(graded, name):
    _compare(f"{name}.student", for_audience(graded[name], "student"))


@pytest.mark.parametrize("name", sorted(GRADED))
def test_terminal_report_reads_at_80_columns(graded, name):
    report = graded[name]
    text = render_rich_text(report, width=WIDTH)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    table = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["Case"]):]
    for c in report.cases:  # every case's name fits on its row, with its points and result beside it
        short = c.name.split(": ", 1)[-1]
        if len(short) <= 48:
            assert any(short in line and "/" in line for line in table), f"{c.name!r} wraps"


def test_first_thing_read_is_the_wrong_lines_cause(graded):
    """One wrong line (lin_O left out): the first line after the score is that cause, with its fix."""
    lines = render_rich_text(graded["one_wrong_line"], width=WIDTH).splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert body[0] == "What to fix"
    assert body[1].startswith("1. Known mistake: output projection lin_O not applied")
    assert "self.lin_O(x_rsh2)" in " ".join(body[2:4])


def test_a_typo_in_the_constructor_is_read_first_with_its_line(graded):
    lines = render_rich_text(graded["constructor_typo"], width=WIDTH).splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert body[1].startswith("1. TypeError while building RecurrentNeuralNetworkClass")
    assert next(line for line in body if "Where:" in line).startswith(
        "   Where: bug_constructor_typo.py, line 19 (__init__): `self.rnn =")
    assert "Size h0 and c0" not in "\n".join(lines)  # the shape hint is not about a constructor error
