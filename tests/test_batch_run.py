"""grade batch: a class graded into one store, resumed after SIGKILL to exactly the same gradebook."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SUBMISSIONS, run_grade
from grader.batch.store import Store, StoreError

CLASS = {  # student id -> submission: correct, two known mistakes, the untouched template, a crash
    "alice": SUBMISSIONS / "mha" / "filled.ipynb",
    "bob": SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py",
    "carol": ROOT / "assignments" / "mha" / "mha.ipynb",
    "dave": SUBMISSIONS / "mha" / "bug_softmax_dim1.py",
    "erin": SUBMISSIONS / "mha" / "bug_hardcoded_dk.py",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    for student, path in CLASS.items():
        shutil.copy(path, folder / f"{student}{path.suffix}")
    (folder / "README.txt").write_text("not a submission")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "-j", "2", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p


def test_a_class_graded_into_a_gradebook_and_feedback(uninterrupted):
    out, p = uninterrupted
    rows = (out / "gradebook.csv").read_text().splitlines()
    assert rows[0].startswith("student_id,name,score,max_score,status,sdpa-shape-3d,")
    scores = {r.split(",")[0]: r.split(",")[2] for r in rows[1:]}
    assert scores == {"alice": "28", "bob": "14", "carol": "0", "dave": "7", "erin": "27"}
    assert "5 submissions (folder layout), 5 graded now" in p.stdout and "README.txt" in p.stdout
    feedback = sorted(f.name for f in (out / "feedback").iterdir())
    assert len(feedback) == 15 and all(f.split("-")[0] in CLASS for f in feedback)
    erin = next((out / "feedback").glob("erin-*.txt")).read_text()
    assert "1 hidden case fails" in erin and "0.58649" not in erin  # students' feedback: the student view
    assert (out / "canvas_import.csv").is_file() and (out / "gradebook_points.csv").is_file()
    page = (out / "class.html").read_text()
    assert "<script" not in page and "scores divided by √d_feat" in page  # the class at a glance
    assert "Pass rate per case" in p.stdout and "e.g. bob" in p.stdout
    summary = (out / "class.txt").read_text()  # what the workers did, as it happened, where the TA reads it
    assert "\nThis run: 5 graded\n" in summary and summary in p.stdout
    assert re.search(r"^workers: 2 warm slots, 2 zygotes started \(torch imported once in each\), [5-9] workers "
                     r"forked from them$", summary, re.M), summary
    flags = (out / "similarity.csv").read_text().splitlines()
    assert flags[0] == "student_a,student_b,similarity_a,similarity_b"
    assert "carol" not in "".join(flags)  # the untouched template is like no one (template code left out)


def test_a_rerun_grades_nothing_again_and_a_changed_file_only_that_one(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out))
    assert again.returncode == 0 and "0 graded now, 5 already in the store" in again.stdout
    assert "This run" not in (out / "class.txt").read_text() and "workers:" not in again.stdout
    changed = tmp_path / "class"
    shutil.copytree(source, changed)
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", changed / "carol.ipynb")  # carol resubmits, filled
    p = run_grade("batch", str(changed), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0 and "1 graded now, 4 already in the store" in p.stdout
    assert "carol,,28,28,graded" in (out / "gradebook.csv").read_text()
    one = run_grade("batch", str(changed), "--assignment", "mha", "--out", str(out), "--student", "bob", "--cold")
    assert "1 graded now, 0 already" in one.stdout
    assert "workers: a cold one per submission (torch imported for each): --cold was asked for" in one.stdout


def test_sigkill_at_any_moment_then_the_same_command_gives_the_same_gradebook(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "batch", str(source), "--assignment", "mha", "--out", str(out),
               "-j", "1"]
    env = {**os.environ, "COLUMNS": "160"}
    for wait_for in (1, 3):  # killed after one result, then after three more were possible
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "grades.sqlite").exists():
                try:
                    with Store.open(out / "grades.sqlite", readonly=True) as store:
                        if store.count() >= wait_for:
                            break
                except StoreError:  # the batch created the file a moment ago and is writing its tables
                    pass
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with Store.open(out / "grades.sqlite", readonly=True) as store:
        assert store.check() == ["ok"] and 1 <= store.count() < len(CLASS)
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), timeout=600)
    assert p.returncode == 0, p.stderr
    assert (out / "gradebook.csv").read_text() == (uninterrupted[0] / "gradebook.csv").read_text()
    assert (out / "canvas_import.csv").read_text() == (uninterrupted[0] / "canvas_import.csv").read_text()


def test_a_zip_of_the_class_is_the_same_class(source, uninterrupted, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", source)
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)  # the same files, so nothing is graded again
    for _ in range(2):
        p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out))
        assert p.returncode == 0 and "0 graded now, 5 already in the store" in p.stdout, p.stdout + p.stderr
    assert (out / "gradebook.csv").read_text() == (uninterrupted[0] / "gradebook.csv").read_text()


def test_usage_mistakes_exit_2(source, tmp_path):
    p = run_grade("batch", str(source), "--assignment", "nope", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "unknown assignment 'nope'" in p.stderr
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(tmp_path / "o"), "--id-regex", "x+")
    assert p.returncode == 2 and "id" in p.stderr
