"""--audience: a student's report shows hidden cases by name, points and result only; an instructor's labels them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, SUBMISSIONS, run_grade
from grader import GradeConfig, grade_submission
from grader.report.audience import for_audience
from grader.report.formats import FROM_SOURCE
from grader.report.render import FORMATS, render, render_rich_text

#: Passes every public case; fails only the hidden 4-D one (it scales by √8, the public cases' d_K).
HIDDEN_ONLY = SUBMISSIONS / "mha" / "bug_hardcoded_dk.py"


@pytest.fixture(scope="module")
def graded():
    return grade_submission(HIDDEN_ONLY)


def _hidden_facts(report) -> set[str]:
    """What the instructor's report shows of the hidden case: its numbers and its inputs' shapes."""
    [case] = [c for c in report.cases if c.case_id == "sdpa-match-4d"]
    assert case.status == "failed" and case.visibility == "hidden"
    numbers = set(re.findall(r"-?\d+\.\d{3,}", case.reason + case.details))
    assert len(numbers) >= 5
    return numbers | {"[2, 3, 5, 16]", "[2, 3, 7, 16]", "[1, 0, 4]"}


def _shows(text: str, fact: str) -> bool:
    """``fact`` appears as itself (0.163 is not in 0.1639)."""
    return re.search(rf"(?<![\d.]){re.escape(fact)}(?![\d])", text) is not None


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_students_report_shows_nothing_of_a_hidden_case(graded, fmt):
    facts = _hidden_facts(graded)
    source = Path(graded.submission)  # the notebook page shows the file's cells (the student's view alone)
    instructor = render(for_audience(graded, "instructor"), fmt, source)
    if fmt not in FROM_SOURCE:
        assert {f for f in facts if _shows(instructor, f)}, "the instructor's report shows the hidden case's data"
    student = render(for_audience(graded, "student"), fmt, source)
    assert fmt not in FROM_SOURCE or ("class MultiHeadedAttention" in re.sub("<[^>]+>", "", student)
                                      and student == instructor)
    if fmt == "json":  # timings are not the hidden case's data (and may share digits with it)
        data = json.loads(student)
        for c in data["cases"]:
            c.pop("duration")
        student = json.dumps(data, ensure_ascii=False)
    assert not {f for f in facts if _shows(student, f)}, f"leaked into the student's {fmt}"
    assert "values, 4-D inputs" in student  # its name, points and result stay
    assert "<table class='heat'>" not in student  # no attention maps of the hidden case


def test_the_student_view_keeps_name_points_result_and_says_why_not_more(graded):
    report = for_audience(graded, "student")
    [case] = [c for c in report.cases if c.case_id == "sdpa-match-4d"]
    assert (case.status, case.score, case.max_score) == ("failed", 0, 1)
    assert case.details == "" and case.problems == () and case.figures == () and case.cause is None
    assert case.duration == 0.0 and case.hint == "" and case.mistakes == ()
    [cause] = report.causes
    assert cause.hidden_only and cause.evidence == "" and "hidden case" in cause.title
    assert report.score == graded.score and report.audience == "student"


def test_an_instructors_report_labels_every_hidden_case(graded):
    text = render_rich_text(graded, width=100)
    hidden = [c for c in graded.cases if c.visibility == "hidden"]
    assert hidden and all(f"{c.name.split(': ', 1)[1]} (hidden)" in text for c in hidden)
    html_page = render(graded, "html")
    assert all(f"{c.name.split(': ', 1)[1]} (hidden)" in html_page for c in hidden)
    assert ",hidden," in render(graded, "csv") and ",public," in render(graded, "csv")
    assert "values, 4-D inputs (hidden)" in render(graded, "junit")


def test_the_cli_flag(graded):
    p = run_grade(str(HIDDEN_ONLY), "--audience", "student", "--format", "gradescope")
    assert p.returncode == 1, p.stderr
    assert not {f for f in _hidden_facts(graded) if _shows(p.stdout, f)}
    assert run_grade(str(HIDDEN_ONLY), "--audience", "everyone").returncode == 2


def test_what_the_code_printed_in_a_hidden_case_is_for_instructors_only(tmp_path):
    """A determined student prints a hidden case's inputs, then hangs, so the output comes back as a note."""
    source = (ROOT / "tests" / "submissions" / "mha" / "correct_einsum.py").read_text()
    marker = "        d_K = K.size(-1)\n"
    assert marker in source
    source = "import sys\n" + source
    leak = tmp_path / "leak.py"
    leak.write_text(source.replace(marker, marker + "        if d_K == 16:\n"
                                   "            print('LEAK', Q.flatten()[:4].tolist(), file=sys.stderr, flush=True)\n"
                                   "            while True:\n                pass\n", 1))
    report = grade_submission(leak, GradeConfig(case_timeout=3))
    assert any("LEAK" in n for n in report.instructor_notes) and not any("LEAK" in n for n in report.notes)
    student = for_audience(report, "student")
    for fmt in FORMATS:
        assert "LEAK" not in render(student, fmt)
    assert "LEAK" in render(report, "rich")  # the instructor sees it


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_students_view_names_no_server_folder(tmp_path, fmt):
    """Graded in a folder of the server (an LMS export extracted under the batch's out folder), a student's
    view names the file alone: no grading folder, no course folder, in every format."""
    folder = tmp_path / "grading-server" / "out" / "extracted" / "adams_john_123_456_mha"
    folder.mkdir(parents=True)
    submission = folder / "mha.py"
    submission.write_text((SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py").read_text())
    report = grade_submission(submission, GradeConfig(assignment="mha"))
    assert str(folder) in render(report, "html") and str(ROOT) in render_rich_text(report)  # the instructor's
    shown = render(for_audience(report, "student"), fmt)
    assert "grading-server" not in shown and str(ROOT) not in shown, shown[:2000]
    assert "mha.py" in shown or fmt in ("junit", "gradescope")  # these two name no submission
