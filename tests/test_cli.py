"""The `grade` command as users run it: formats, -o, and the exit codes of DESIGN.md §1."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, run_grade, course
from grader.course.assignments import get_assignment

MHA = get_assignment(course(), "mha")
LSTM = get_assignment(course(), "lstm")

TEMPLATE = "assignments/mha/mha.ipynb"
FILLED = "tests/submissions/mha/filled.ipynb"


def test_template_scores_zero_with_exit_1_and_no_traceback():
    p = run_grade(TEMPLATE)
    assert p.returncode == 1, p.stderr
    assert f"0/{MHA.max_score:g}" in p.stdout and "not implemented yet" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr


def test_filled_template_gets_full_marks_with_exit_0():
    p = run_grade(FILLED)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{MHA.max_score:g}/{MHA.max_score:g}" in p.stdout


def test_lstm_template_and_filled():
    assert run_grade("assignments/lstm/lstm.ipynb").returncode == 1
    p = run_grade("tests/submissions/lstm/filled.ipynb", "--format", "json")
    assert p.returncode == 0
    report = json.loads(p.stdout)
    assert report["score"] == report["max_score"] == LSTM.max_score


def test_gradescope_format_follows_the_spec(tmp_path):
    out = tmp_path / "results.json"
    p = run_grade("tests/submissions/mha/bug_sqrt_dfeat.py", "--format", "gradescope", "-o", str(out))
    assert p.returncode == 1
    data = json.loads(out.read_text())
    assert set(data) == {"score", "max_score", "output", "execution_time", "tests"}
    sqrt_dfeat_failures = {"mha-match", "mha-cross", "mha-batch1", "mha-heads-30-5", "mha-heads-16-8",
                           "mha-padding", "mha-causal", "mha-grad"}
    lost = sum(c.points for c in MHA.cases if c.id in sqrt_dfeat_failures)
    assert data["score"] == sum(t["score"] for t in data["tests"]) == MHA.max_score - lost
    assert data["max_score"] == MHA.max_score
    for t in data["tests"]:
        assert set(t) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed") and t["visibility"] in ("visible", "hidden")
    failed = [t for t in data["tests"] if t["status"] == "failed"]
    assert "√d_feat instead of √d_head" in failed[0]["output"]
    assert "Grading" in p.stdout  # the table still goes to the terminal with -o


def test_junit_format():
    p = run_grade("tests/submissions/lstm/bug_hardcoded_batch.py", "--format", "junit")
    assert p.returncode == 1
    suite = ET.fromstring(p.stdout)
    assert suite.tag == "testsuite" and suite.get("name") == "lstm"
    assert int(suite.get("errors")) == 7 and int(suite.get("failures")) == 0
    assert len(suite.findall("testcase")) == len(LSTM.cases)


def test_unreadable_submission_still_gets_a_report(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ this is not json")
    p = run_grade(str(bad), "--assignment", "mha", "--format", "gradescope")
    assert p.returncode == 1
    data = json.loads(p.stdout)
    assert data["score"] == 0 and data["max_score"] == MHA.max_score and "not a valid notebook" in data["output"]


def test_usage_errors_exit_2(tmp_path):
    assert run_grade(str(tmp_path / "missing.ipynb")).returncode == 2
    assert run_grade(FILLED, "--assignment", "nope").returncode == 2
    assert run_grade(FILLED, "--format", "pdf").returncode == 2
    (tmp_path / "other.py").write_text("class Foo:\n    pass\n")
    p = run_grade(str(tmp_path / "other.py"))
    assert p.returncode == 2 and "--assignment" in p.stderr


def test_internal_error_exits_3_and_is_not_a_zero(tmp_path):
    course = tmp_path / "course"
    (course / "assignments" / "mha").mkdir(parents=True)
    (course / "reference").mkdir()
    (course / "assignments" / "mha" / "cases.toml").write_text(
        (ROOT / "assignments" / "mha" / "cases.toml").read_text())
    (course / "reference" / "mha.py").write_text("raise RuntimeError('broken reference')\n")
    out = tmp_path / "r.json"
    p = run_grade(FILLED, "--root", str(course), "--no-cache", "--format", "gradescope", "-o", str(out))
    assert p.returncode == 3
    assert "internal error" in p.stderr and not out.exists()


def test_help_is_fast_and_does_not_import_torch():
    start = time.perf_counter()
    p = run_grade("--help")
    assert p.returncode == 0 and "SUBMISSION" in p.stdout
    assert time.perf_counter() - start < 2.0  # generous here; benchmarks/ measures the real figure
    import subprocess
    import sys
    code = "import sys, grader.cli; assert 'torch' not in sys.modules and 'rich' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ctrl_c_where_python_cannot_raise_it_is_raised_again_not_printed_and_lost(capsys):
    """A Ctrl-C landing in a fork handler (logging's, as a subprocess starts) is "unraisable": Python would
    print "Exception ignored in ..." with a traceback and drop it. The command raises it again in the main
    thread, where it says what was saved; other unraisable errors still reach the previous hook."""
    import time
    import types

    from grader.cli import _ctrl_c_never_lost

    seen = []
    hook = _ctrl_c_never_lost(seen.append)
    other = types.SimpleNamespace(exc_type=ValueError, exc_value=ValueError("x"))
    hook(other)
    assert seen == [other]
    with pytest.raises(KeyboardInterrupt):
        hook(types.SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=KeyboardInterrupt()))
        for _ in range(1000):  # the interrupt is delivered at the main thread's next check
            time.sleep(0.001)
    assert seen == [other] and capsys.readouterr().err == ""
