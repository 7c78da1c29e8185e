"""The course never comes from the submission's side: a bundle uploaded with the work changes nothing.

A student (alice) uploads her work together with a forged course: a case file that gives all
the points to a check of her own, a ``checks.py`` that would run in the grader's process, and a
``reference/`` that would be graded against. While a trusted course exists (``--root``,
``$GRADER_ROOT``, the course around the current folder, the grader's checkout), none of it is
read; without one, only a released bundle's public fixtures are, for a local check that says so.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, course, run_grade
from grader import GradeConfig, grade_submission
from grader.authoring.release import release
from grader.course import resolve
from grader.course.assignments import get_assignment
from grader.errors import UsageError

DO_NOTHING = """\
import torch.nn as nn


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        return Q, Q


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=None, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()

    def forward(self, Q, K, V, mask=None):
        return {}
"""


def _forge(folder: Path, marker: Path) -> None:
    """A course of alice's own beside her work: every piece of it leaves ``marker`` if it ever runs."""
    assignment = folder / "assignments" / "mha"
    assignment.mkdir(parents=True)
    (assignment / "cases.toml").write_text(
        '[assignment]\nname = "mha"\nreference = "mha.py"\n\n[targets.MultiHeadedAttention]\nargs = ["Q"]\n'
        'returns = "x"\n\n[[cases]]\nid = "win"\ntarget = "MultiHeadedAttention"\nchecks = ["win"]\npoints = 28\n')
    leave = f"open({str(marker)!r}, 'a').write('ran\\n')\n"
    (assignment / "checks.py").write_text(leave + "CHECKS = {'win': lambda *a: []}\n")
    (folder / "reference").mkdir()
    (folder / "reference" / "mha.py").write_text(leave + DO_NOTHING)


@pytest.fixture
def alice(tmp_path):
    marker = tmp_path / f"forged-{uuid.uuid4().hex}"
    upload = tmp_path / "uploads" / "alice"
    upload.mkdir(parents=True)
    (upload / "mha.py").write_text(DO_NOTHING)
    _forge(upload, marker)
    return upload / "mha.py", marker


def test_a_forged_bundle_beside_the_submission_is_ignored(alice, tmp_path):
    submission, marker = alice
    # From a folder outside any course, with no $GRADER_ROOT: the grader's checkout is the trusted course.
    p = run_grade(str(submission), "--format", "json", cwd=tmp_path, env={"GRADER_ROOT": ""})
    report = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr
    assert not marker.exists(), "code from the submission's folder ran in the grader"
    assert report["course"] == str(ROOT) and not report["local"]
    assert report["max_score"] == get_assignment(course(), "mha").max_score
    assert report["score"] < 5 and "win" not in {c["case_id"] for c in report["cases"]}


def test_the_order_of_trusted_courses(tmp_path, monkeypatch):
    inside = tmp_path / "course" / "sub"
    inside.mkdir(parents=True)
    (tmp_path / "course" / "assignments").mkdir()
    monkeypatch.delenv("GRADER_ROOT", raising=False)
    monkeypatch.chdir(inside)
    beside = tmp_path / "up" / "x.py"
    assert resolve.resolve_course(tmp_path, beside).source == "option"
    monkeypatch.setenv("GRADER_ROOT", str(tmp_path))
    assert resolve.resolve_course(None, beside).source == "env"
    monkeypatch.delenv("GRADER_ROOT")
    found = resolve.resolve_course(None, beside)
    assert (found.source, found.root) == ("cwd", (tmp_path / "course").resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve.resolve_course(None, beside).source == "checkout"
    monkeypatch.setattr(resolve, "grader_checkout", lambda: None)
    (tmp_path / "up" / "assignments").mkdir(parents=True)
    found = resolve.resolve_course(None, beside)
    assert (found.source, found.trusted) == ("submission", False)
    shutil.rmtree(tmp_path / "up" / "assignments")
    with pytest.raises(UsageError, match="no course found"):
        resolve.resolve_course(None, beside)


def test_without_a_trusted_course_a_bundle_beside_the_work_is_a_local_check_only(alice, tmp_path, monkeypatch):
    submission, marker = alice
    monkeypatch.delenv("GRADER_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(resolve, "grader_checkout", lambda: None)
    with pytest.raises(UsageError, match="no released fixtures"):  # a forged course without fixtures
        grade_submission(submission)
    assert not marker.exists()
    # A real released bundle, with a forged checks.py and reference/ added: only public fixtures are read.
    shutil.rmtree(submission.parent / "assignments")
    release(get_assignment(course(), "mha"), submission.parent, GradeConfig())
    (submission.parent / "assignments" / "mha" / "checks.py").write_text(
        f"open({str(marker)!r}, 'a').write('ran')\nCHECKS = {{}}\n")
    report = grade_submission(submission)
    assert not marker.exists(), "an untrusted course's code ran in the grader"
    assert report.local and report.course == str(submission.parent)
    assert any("this is not a grade" in n for n in report.notes)
    assert {c.status for c in report.cases if c.visibility == "hidden"} == {"pending"}


def test_every_command_says_which_course_and_update_writes_only_there(tmp_path):
    """From inside a course folder (no $GRADER_ROOT), validate checks that course, says so, and --update
    writes there, listing each file; the grader's checkout is left alone."""
    mine = tmp_path / "my-course"
    shutil.copytree(ROOT / "assignments" / "gru", mine / "assignments" / "gru")
    shutil.copytree(ROOT / "reference", mine / "reference")
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "assignments" / "gru").iterdir()}
    p = run_grade("validate", "gru", "--update", cwd=mine, env={"GRADER_ROOT": ""}, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"course: {mine} (from the current folder)" in p.stdout
    assert f"gru: cases from {mine / 'assignments' / 'gru' / 'cases.toml'}" in p.stdout
    assert f"wrote {mine / 'assignments' / 'gru' / 'gru.ipynb'}" in p.stdout
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "assignments" / "gru").iterdir()} == before
    unknown = run_grade("validate", "rnn", cwd=mine, env={"GRADER_ROOT": ""})
    assert unknown.returncode == 2 and f"unknown assignment 'rnn' in the course {mine}" in unknown.stderr


def test_a_course_passed_over_for_grader_root_is_said(tmp_path):
    mine = tmp_path / "my-course"
    shutil.copytree(ROOT / "assignments" / "gru", mine / "assignments" / "gru")
    p = run_grade(str(ROOT / "tests" / "submissions" / "gru" / "correct.py"), "--format", "json", cwd=mine)
    report = json.loads(p.stdout)
    assert report["course"] == str(ROOT)
    assert any(f"the current folder is inside another course, {mine}, which was not used" in n
               for n in report["notes"])
