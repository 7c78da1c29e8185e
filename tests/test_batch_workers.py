"""grader.batch.workers: grading processes; one that dies costs only its current submission."""
from __future__ import annotations

from conftest import ROOT

from grader.batch.workers import Pool, Task
from grader.config import GradeConfig, Limits

COURSE = ROOT / "tests" / "fixtures" / "course"
VICTIM = ROOT / "tests" / "cross" / "victim.py"
CONFIG = GradeConfig(root=COURSE, assignment="toy", sandbox="none", timeout=60, case_timeout=10)


def test_results_come_back_with_their_feedback():
    with Pool(2, False, Limits(), ()) as pool:
        results = dict(pool.grade_all([Task(i, VICTIM, str(VICTIM)) for i in range(3)], CONFIG))
    assert sorted(results) == [0, 1, 2]
    for graded in results.values():
        assert graded.entry.status == "graded" and graded.entry.score == 3
        assert graded.entry.report is not None and graded.entry.report.score == 3
        assert [suffix for suffix, _ in graded.feedback] == [".html", ".json", ".txt", ".notebook.html"]


def test_a_grading_process_that_dies_costs_its_submission_only():
    with Pool(1, False, Limits(), ()) as pool:
        pool._all[0].proc.kill()
        pool._all[0].proc.wait()
        results = list(pool.grade_all([Task("first", VICTIM, ""), Task("second", VICTIM, "")], CONFIG))
    assert [key for key, _ in results] == ["first", "second"]
    first, second = results[0][1], results[1][1]
    assert first.entry.status == "internal" and "grading process failed" in first.entry.message
    assert "it ended (SIGKILL)" in first.entry.message
    assert second.entry.status == "graded" and second.entry.score == 3


def test_a_report_names_the_file_the_task_shows_not_the_copy_graded(tmp_path):
    """grade batch grades a private copy of each student's file: its report, stored result and feedback
    name the student's own file and the course as this machine names them (the Dask cluster sends
    the same ``Task.shown`` to its workers: tests/test_cluster.py)."""
    copy = tmp_path / ".grade-batch-copies-x" / "1" / "alice.py"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(VICTIM.read_bytes())
    with Pool(1, False, Limits(), (), course_shown="/srv/course") as pool:
        [(key, graded)] = list(pool.grade_all([Task("alice", copy, "/class/alice.py")], CONFIG))
    report = graded.entry.report
    assert key == "alice" and (report.submission, report.course) == ("/class/alice.py", "/srv/course")
    assert str(copy) not in graded.entry.text and ".grade-batch-copies" not in "".join(t for _, t in graded.feedback)
    assert graded.entry.score == 3
