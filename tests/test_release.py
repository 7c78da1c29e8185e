"""Releasing: templates come from the reference; bundles check locally without it; validate holds."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT, run_grade, course
from grader.course.assignments import assignment_names, get_assignment
from grader.spec.case_file import load_assignment
from grader.config import GradeConfig
from grader.authoring.release import blank_solutions, dumps_toml, release, released_cases_toml
from grader.authoring.validate import validate


@pytest.mark.parametrize("source, expected", [
    ("    y = f(x)  # SOLUTION", "    y = # FILL IN HERE"),
    ("    self.a[0] += 1  # SOLUTION", "    self.a[0] += # FILL IN HERE"),
    ("        return y  # SOLUTION", "        # FILL IN HERE"),
    ("    if a == b:  # SOLUTION", "    # FILL IN HERE"),
    ("x = 1\n    # BEGIN SOLUTION\n    a = 1\n    b = 2\n    # END SOLUTION\ny = 2", "x = 1\n    # FILL IN HERE\ny = 2"),
    ("z = 3  # a comment", "z = 3  # a comment"),
])
def test_blank_solutions(source, expected):
    assert blank_solutions(source) == expected


@pytest.mark.parametrize("name", ["mha", "lstm", "gru"])
def test_released_case_file_keeps_hidden_cases_to_name_and_points(name):
    a = get_assignment(course(), name)
    text = released_cases_toml(a)
    data = tomllib.loads(text)
    assert data["assignment"]["released"] is True
    for case in data["cases"]:
        if case.get("visibility") == "hidden":
            assert set(case) <= {"id", "name", "target", "points", "visibility"}
    original = tomllib.loads(a.cases_file.read_text())
    assert [c["id"] for c in data["cases"]] == [c["id"] for c in original["cases"]]
    assert tomllib.loads(dumps_toml(original)) == original  # the writer round-trips case files


def test_bundle_checks_locally_without_the_reference(tmp_path):
    out = tmp_path / "bundle"
    paths = release(get_assignment(course(), "mha"), out, GradeConfig())
    assert not (out / "reference").exists()
    text = " ".join(p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".ipynb", ".toml", ".json"))
    assert "# SOLUTION" not in text and "masked_fill(mask == 0" not in text
    from safetensors.numpy import load_file
    hidden = {c.id for c in get_assignment(course(), "mha").cases if c.hidden}
    assert not {k.split("/")[0] for k in load_file(str(paths.fixtures))} & hidden
    shutil.copy(ROOT / "tests" / "submissions" / "mha" / "bug_sqrt_dfeat.py", out / "submit.py")
    env = {k: v for k, v in os.environ.items() if k != "GRADER_ROOT"}
    p = subprocess.run([sys.executable, "-m", "grader", "submit.py", "--format", "json"], cwd=out, env=env,
                       capture_output=True, text=True, timeout=120)
    report = json.loads(p.stdout)
    assert report["local"] is True and report["pending_points"] == sum(
        c.points for c in get_assignment(course(), "mha").cases if c.hidden)
    assert {c["case_id"] for c in report["cases"] if c["status"] == "pending"} == hidden
    assert report["max_score"] == get_assignment(course(), "mha").max_score - report["pending_points"]
    rich = subprocess.run([sys.executable, "-m", "grader", "submit.py"], cwd=out, env={**env, "COLUMNS": "150"},
                          capture_output=True, text=True, timeout=120).stdout
    assert "Total, public cases only" in rich and "graded after you submit" in rich
    assert "all tests passed" not in rich.lower()


@pytest.mark.parametrize("name", ["mha", "lstm", "gru"])
def test_validate(name):
    findings = validate(get_assignment(course(), name), GradeConfig(root=ROOT))
    assert [f for f in findings if not f.ok] == []
    assert len(findings) == 10  # 8, and the two marker checks `grade release` refuses on


def test_validate_command_covers_every_assignment():
    assert set(assignment_names(ROOT)) == {"mha", "lstm", "gru"}


def _course_copy(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(ROOT / "assignments", course / "assignments")
    shutil.copytree(ROOT / "reference", course / "reference")
    return course


def test_a_case_added_to_the_toml_shows_up_in_the_next_report(tmp_path):
    course = _course_copy(tmp_path)
    with open(course / "assignments" / "gru" / "cases.toml", "a") as f:
        f.write('\n[[cases]]\nid = "gru-wide"\nname = "GRUCell: a wide state"\ntarget = "GRUCell"\n'
                'init = { xdim = 3, hdim = 40 }\ninputs = { x = [2, 3], h = [2, 40] }\nchecks = ["match"]\npoints = 3\n')
    p = run_grade(str(ROOT / "tests" / "submissions" / "gru" / "bug_reset_before_bias.py"), "--root", str(course),
                  "--format", "json")
    checks = {c["case_id"]: c for c in json.loads(p.stdout)["cases"]}
    assert checks["gru-wide"]["status"] == "failed" and checks["gru-wide"]["max_score"] == 3


def test_instructor_check_function(tmp_path):
    course = _course_copy(tmp_path)
    (course / "assignments" / "gru" / "checks.py").write_text(
        "def bounded(case, target, ref, ref_record, stu, stu_record):\n"
        "    h = stu.get('out/h_next')\n"
        "    return [] if h is not None and abs(h).max() <= 1 else ['h_next must lie in [-1, 1]']\n"
        "CHECKS = {'bounded': bounded}\n")
    with open(course / "assignments" / "gru" / "cases.toml", "a") as f:
        f.write('\n[[cases]]\nid = "gru-bounded"\ntarget = "GRUCell"\ninit = { xdim = 3, hdim = 4 }\n'
                'inputs = { x = [2, 3] }\nchecks = ["bounded"]\npoints = 1\n')
    assert load_assignment(course / "assignments" / "gru", course).custom_checks.keys() == {"bounded"}
    p = run_grade(str(ROOT / "tests" / "submissions" / "gru" / "correct.py"), "--root", str(course), "--format", "json")
    checks = {c["case_id"]: c for c in json.loads(p.stdout)["cases"]}
    assert checks["gru-bounded"]["status"] == "passed"


def test_check_grades_a_given_notebook():
    from grader import check
    report = check(ROOT / "tests" / "submissions" / "mha" / "filled.ipynb", show=False)
    assert report.all_passed
