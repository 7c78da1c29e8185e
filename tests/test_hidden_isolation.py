"""Hidden cases never reach what a student reads, whatever the submission's code does to carry them there.

The proof is a determined student (tests/hidden/spy_mha.py): a correct solution that learns every input
it can reach (the worker's memory, files earlier workers left, the case it runs in) and tries to show it
through each channel a student reads: a public case's exception message and the cause it is grouped in,
a public case's values and attention map, what the code prints before it stops and its exit status,
stray lines on the result channel, a top-level statement's error, which forbidden API a hidden case
calls, how long a hidden case takes, and whether a hidden case's error joins a public case's cause.

It is graded against the real course and against a copy whose hidden cases have other inputs (other
shapes, other seeds). The student's view must be the same in both, in every format and in the feedback
files ``grade batch`` writes (noninterference: nothing of the hidden inputs changes a byte of it), and
must hold none of what the code learned of a hidden case. The instructor's view shows it all.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, course
from grader import GradeConfig, grade_submission
from grader.batch.feedback import feedback_texts
from grader.course.assignments import get_assignment
from grader.execute.jobs import call_spec, make_job
from grader.execute.observation import Observation
from grader.execute.runner import WorkerRun
from grader.execute.execution import MAX_RESTARTS, Part, run_cases
from grader.report.audience import for_audience
from grader.model.outcomes import (Crashed, ErrorInfo, Exited, NotRun, Pending, ShapeDiffers, ValueDiffers,
                                   WrongAnswer)
from grader.report.render import FORMATS, render
from grader.model.result import CaseResult, CauseSummary, Report

SPY = Path(__file__).parent / "hidden" / "spy_mha.py"
MHA = get_assignment(course(), "mha")
HIDDEN = [c.id for c in MHA.cases if c.hidden]
#: Other inputs for the hidden cases: (case id, what its case file says, what the other course says).
OTHER_INPUTS = {
    "sdpa-match-4d": ("inputs = { Q = [2, 3, 5, 16], K = [2, 3, 7, 16], V = [2, 3, 7, 4] }\nseed = 2\n",
                      "inputs = { Q = [2, 3, 6, 32], K = [2, 3, 9, 32], V = [2, 3, 9, 4] }\nseed = 102\n"),
    "mha-cross": ("inputs = { Q = [2, 3, 20], K = [2, 7, 20], V = [2, 7, 20] }\nseed = 11\n",
                  "inputs = { Q = [2, 4, 20], K = [2, 9, 20], V = [2, 9, 20] }\nseed = 111\n"),
    "mha-grad": ("inputs = { Q = [2, 5, 20], K = [2, 5, 20], V = [2, 5, 20] }\nseed = 17\n",
                 "inputs = { Q = [2, 7, 20], K = [2, 7, 20], V = [2, 7, 20] }\nseed = 117\n"),
}


def _other_course(folder: Path) -> Path:
    """The course with other inputs for every hidden case (the public ones unchanged)."""
    shutil.copytree(ROOT / "assignments" / "mha", folder / "assignments" / "mha")
    shutil.copytree(ROOT / "reference", folder / "reference")
    toml = folder / "assignments" / "mha" / "cases.toml"
    text = toml.read_text(encoding="utf-8")
    for case_id, (was, now) in OTHER_INPUTS.items():
        start = text.index(f'id = "{case_id}"')
        end = text.find("[[cases]]", start)
        end = len(text) if end < 0 else end
        assert text.count(was, start, end) == 1, case_id
        text = text[:start] + text[start:end].replace(was, now) + text[end:]
    toml.write_text(text, encoding="utf-8")
    assert set(OTHER_INPUTS) == set(HIDDEN)
    return folder


@pytest.fixture(scope="module")
def other_course(tmp_path_factory):
    return _other_course(tmp_path_factory.mktemp("other-course"))


@pytest.fixture(scope="module", params=["bwrap", "none"])
def graded(request, other_course):
    """The spy graded against the real course and against the other one (cold workers), in the sandbox and
    without it (where the worker runs as a user of its own, whose files are removed after it)."""
    import os

    from conftest import require_bwrap
    from grader.execute.uids import fresh_uid

    if request.param == "bwrap":
        require_bwrap()
    elif not hasattr(os, "geteuid") or os.geteuid() != 0 or fresh_uid() is None:
        pytest.skip("without bubblewrap, only a worker with a user of its own is kept from the files an "
                    "earlier worker left (docs/security.md)")
    return {world: grade_submission(SPY, GradeConfig(root=root, sandbox=request.param))
            for world, root in (("real", ROOT), ("other", other_course))}


def _students(report: Report) -> Report:
    """The student's view, without what differs from run to run on its own (the public cases' timings, the
    course folder's path, a cold or a forked worker)."""
    shown = for_audience(report, "student")
    cases = tuple(dataclasses.replace(c, duration=0.0) for c in shown.cases)
    return dataclasses.replace(shown, cases=cases, course="(course)", isolation="(isolation)")


def _learned(report: Report) -> set[str]:
    """What the spy learned of the hidden cases (as it writes it: 'sdpa-match-4d=2x3x5x16...')."""
    everything = render(report, "json")
    return set(re.findall(rf"(?:{'|'.join(map(re.escape, HIDDEN))})=[0-9x]+(?::-?[0-9.]+)?", everything))


# --------------------------------------------------------------------------- the whole attack


def test_the_spy_learns_the_hidden_inputs_and_the_instructor_sees_them(graded):
    """The attack is real: the hidden cases' own runs hold their inputs, and the instructor's report shows them."""
    learned = _learned(graded["real"])
    assert {"sdpa-match-4d=2x3x5x16", "mha-cross=2x3x20", "mha-grad=2x5x20"} <= {t.split(":")[0] for t in learned}
    assert any("sdpa-match-4d=2x3x5x16" in n for n in graded["real"].instructor_notes)  # what mha-grad printed
    assert {t.split(":")[0] for t in _learned(graded["other"])} >= {"sdpa-match-4d=2x3x6x32", "mha-cross=2x4x20"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_students_view_holds_nothing_the_code_learned_of_a_hidden_case(graded, fmt):
    for world, report in graded.items():
        text = render(for_audience(report, "student"), fmt)
        found = [h for h in HIDDEN if f"{h}=" in text] + [s for s in ("2x3x5x16", "2x3x6x32", "hidden said")
                                                           if s in text]
        assert not found, f"{world}: the student's {fmt} shows {found}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_students_view_is_the_same_whatever_the_hidden_inputs(graded, fmt):
    """Noninterference: other hidden inputs change nothing a student reads (hidden cases keep their result)."""
    real, other = (render(_students(graded[w]), fmt) for w in ("real", "other"))
    assert real == other


def test_the_feedback_files_of_grade_batch_are_the_same_whatever_the_hidden_inputs(graded):
    real, other = (feedback_texts(_students(graded[w])) for w in ("real", "other"))
    assert real == other
    assert all(f"{h}=" not in text for _, text in real for h in HIDDEN)


def test_each_channel_was_tried_and_shows_only_public_inputs(graded):
    """What the attack made of each channel, in the real course: every one of them ran."""
    report = graded["real"]
    by_id = {c.case_id: c for c in report.cases}
    student = for_audience(report, "student")
    text = render(student, "rich")
    # a public case's exception message, and the cause it titles: public inputs only
    assert by_id["sdpa-padding"].status == "error" and "public mha-batch1=1x4x12" in by_id["sdpa-padding"].reason
    # a public case's values and attention map: wrong, from public inputs only
    assert by_id["sdpa-causal"].status == "failed" and by_id["sdpa-causal"].figures
    # a public case's output and exit status: shown to the student, public inputs only
    assert by_id["mha-batch1"].status == "error"
    assert any(n.startswith("Last output of your code") and "sdpa-shape-4d=2x3x4x8" in n for n in student.notes)
    # a top-level statement's error: shown, public inputs only
    assert "top-level code saw" in text
    # the hidden case's error joins the public case's cause for the instructor only
    shared = report.cause(by_id["sdpa-padding"].cause_ref)
    assert "sdpa-match-4d" in shared.cases
    assert all("sdpa-match-4d" not in c.cases or c.hidden_only for c in student.causes)
    # a forbidden call made only in a hidden case fails the public policy case, without saying which
    assert by_id["mha-policy"].status == "failed"
    assert "while a hidden case ran" in by_id["mha-policy"].details + by_id["mha-policy"].reason
    policy = by_id["mha-policy"]
    told = policy.reason + policy.details + json.dumps(report.cause(policy.cause_ref).__dict__)
    assert "scaled_dot_product" not in told and "MultiheadAttention" not in told and "mha-cross" not in told
    # stray lines, printed output and an exit status from a hidden case: instructors only
    assert any("result channel" in n for n in report.instructor_notes)
    assert not any("result channel" in n for n in report.notes)
    # time spent in a hidden case
    assert by_id["sdpa-match-4d"].duration >= 0.16 and report.execution_time > 0
    assert all(c.duration == 0 for c in student.cases if c.visibility == "hidden") and student.execution_time == 0


def test_a_warm_slot_gives_the_hidden_cases_a_fresh_fork(other_course):
    """``grade batch``: the public cases in children of the zygote, the hidden ones in the next, after the
    last one's clean-up; the student's view is the same whatever the hidden inputs, and a cold worker's."""
    from conftest import require_bwrap
    from grader.execute.slots import WarmSlot

    require_bwrap()
    reports = {}
    for world, root in (("real", ROOT), ("other", other_course)):
        config = GradeConfig(root=root, sandbox="bwrap")
        with WarmSlot("bwrap", config.limits) as slot:
            reports[world] = grade_submission(SPY, config, slot)
            assert (slot.forks, slot.fallbacks) == (3, 0)  # the public part, its restart after mha-batch1, the hidden
    cold = grade_submission(SPY, GradeConfig(root=ROOT, sandbox="bwrap"))
    shown = {render(_students(r), "json") for r in (*reports.values(), cold)}
    assert len(shown) == 1
    assert all(f"{h}=" not in text for text in shown for h in HIDDEN)


# --------------------------------------------------------------------------- the student view, by hand


def _case(cid: str, status: str, ref: int, hidden: bool = False, problems=(), score: float = 0.0,
          duration: float = 0.5) -> CaseResult:
    cause = None if status == "passed" else WrongAnswer()
    secret = "12352" if hidden else "public"
    return CaseResult(cid, f"T: {cid}", "T", status, score if status != "passed" else 1.0, 1.0,
                      "" if status == "passed" else f"{cid} saw {secret}", f"details {secret}",
                      "hidden" if hidden else "public", duration, cause=cause, problems=tuple(problems),
                      cause_ref=ref)


def test_a_cause_shared_with_hidden_cases_shows_its_public_cases_alone():
    values = (ValueDiffers("x", max_abs=1.0, max_rel=1.0, index=[0], expected=1.0, got=2.0, n_bad=1, n_total=4),)
    shape = (ShapeDiffers("y", got=[1], expected=[2]),)
    report = Report("s.py", "mha", (
        _case("h1", "failed", 1, hidden=True, problems=shape),
        _case("p1", "failed", 1, problems=values),
        _case("p2", "passed", 0),
        _case("h2", "failed", 2, hidden=True),
        _case("p3", "failed", 1, problems=values),
        _case("h3", "failed", 3, hidden=True),
    ), execution_time=2.5, causes=(
        CauseSummary(1, "wrong_answer", "x differs", ("h1", "p1", "p3"), 3, evidence="from p1", seen_in="T: p1",
                     varied=True),
        CauseSummary(2, "exception", "ValueError: 12352", ("h2",), 1, evidence="12352", hidden_only=True),
        CauseSummary(3, "wrong_answer", "y differs", ("h3",), 1, evidence="12352", hidden_only=True),
    ))
    student = for_audience(report, "student")
    assert [(c.number, c.cases, c.points_lost) for c in student.causes] == [
        (1, ("p1", "p3"), 2), (2, ("h1", "h2", "h3"), 3)]
    first, hidden = student.causes
    assert not first.varied and first.seen_in == "T: p1" and not first.hidden_only  # p1 and p3 show the same
    assert hidden.hidden_only and hidden.title.startswith("3 hidden cases fail") and not hidden.evidence
    assert [c.cause_ref for c in student.cases] == [2, 1, 0, 2, 1, 2]
    for c in student.cases:
        if c.visibility == "hidden":
            assert (c.cause, c.problems, c.duration, c.details) == (None, (), 0.0, "")
    assert student.execution_time == 0.0
    for fmt in FORMATS:
        assert "12352" not in render(student, fmt)


def test_one_public_case_left_in_a_cause_is_told_as_one():
    report = Report("s.py", "mha", (_case("h1", "failed", 1, hidden=True), _case("p1", "failed", 1)), causes=(
        CauseSummary(1, "wrong_answer", "x differs", ("h1", "p1"), 2, evidence="e", seen_in="T: p1"),))
    [public, hidden] = for_audience(report, "student").causes
    assert public.cases == ("p1",) and public.seen_in == "" and hidden.cases == ("h1",)


def test_a_local_check_keeps_its_time_and_its_pending_cases():
    pending = CaseResult("h", "T: h", "T", "pending", 0, 2, "graded after submission", "", "hidden",
                         cause=Pending())
    report = Report("s.py", "mha", (_case("p", "passed", 0), pending), execution_time=1.5, local=True)
    student = for_audience(report, "student")
    assert student.execution_time == 1.5 and student.cases[1] == pending and student.causes == ()


# --------------------------------------------------------------------------- the run in parts


class _Worker:
    """A worker that records what it is given and answers as told."""

    def __init__(self, log: list, answer=None):
        self.log, self.answer, self.closed = log, answer, False

    def close(self):
        self.closed = True

    def run(self, job, inputs, timeout, step_timeout=None):
        self.log.append((self, [c.id for c in job.calls], inputs))
        if self.answer is not None:
            return self.answer(job)
        return WorkerRun(started=True, exec_done=True, finished=True,
                         observations={c.id: Observation(c.id, "ok") for c in job.calls})


def _parts(public_ids=("sdpa-shape-3d", "sdpa-match-3d")):
    cases = {c.id: c for c in MHA.cases}
    public = [cases[i] for i in public_ids]
    hidden = [cases["sdpa-match-4d"], cases["mha-cross"]]
    return [Part(make_job("run", [], "student", [call_spec(c, MHA) for c in public]), b"public inputs"),
            Part(make_job("run", [], "student", [call_spec(c, MHA) for c in hidden]), b"hidden inputs", private=True)]


def test_each_part_runs_in_a_worker_of_its_own_with_its_own_calls_and_inputs():
    log: list = []
    made: list = []

    def new_worker():
        made.append(_Worker(log))
        return made[-1]

    first = _Worker(log)
    execution = run_cases([first], new_worker, _parts(), 60, 10)
    assert [(ids, inputs) for _, ids, inputs in log] == [
        (["sdpa-shape-3d", "sdpa-match-3d"], b"public inputs"), (["sdpa-match-4d", "mha-cross"], b"hidden inputs")]
    assert log[0][0] is first and log[1][0] is made[0] and len(made) == 1
    assert set(execution.observations) == {"sdpa-shape-3d", "sdpa-match-3d", "sdpa-match-4d", "mha-cross"}


def test_a_worker_started_for_the_hidden_part_that_waited_too_long_is_replaced(monkeypatch):
    """A cold worker started while the public part runs waits for its job; after a long public part it
    would count as a worker that never started (``STARTUP_TIMEOUT``): a fresh one runs the hidden part."""
    from grader.execute import execution

    monkeypatch.setattr(execution, "STARTUP_TIMEOUT", 0.0)
    log: list = []
    first, spare, fresh = _Worker(log), _Worker(log), _Worker(log)
    run_cases([first, spare], lambda: fresh, _parts(), 60, 10)
    assert [w for w, _, _ in log] == [first, fresh] and spare.closed
    monkeypatch.setattr(execution, "STARTUP_TIMEOUT", 120.0)
    log.clear()
    run_cases([first, spare], lambda: fresh, _parts(), 60, 10)
    assert [w for w, _, _ in log] == [first, spare]


def test_what_a_hidden_part_shows_is_for_instructors_and_its_top_level_errors_are_not_the_reports():
    def answer(job):
        error = ErrorInfo("RuntimeError", ("RuntimeError",), "saw " + ",".join(c.id for c in job.calls), "tb")
        return WorkerRun(started=True, exec_done=True, exec_errors=(error,), stop=Exited(9),
                         running=job.calls[0].id, stderr=f"printed {job.calls[0].id}",
                         observations={}, ignored=2)

    log: list = []
    execution = run_cases([_Worker(log, answer)], lambda: _Worker(log, answer), _parts(), 60, 10)
    shown = json.dumps([n.to_dict() for n in execution.notes])
    private = json.dumps([n.to_dict() for n in execution.private_notes])
    assert "sdpa-shape-3d" in shown and "sdpa-match-4d" not in shown and "mha-cross" not in shown
    assert "sdpa-match-4d" in private
    assert [e.message for e in execution.exec_errors] == ["saw sdpa-shape-3d,sdpa-match-3d"]


def test_a_stop_in_top_level_code_loses_every_part_and_restarts_are_counted_for_the_submission():
    def top_level(job):
        return WorkerRun(started=True, stop=Exited(1), running="")

    log: list = []
    execution = run_cases([_Worker(log, top_level)], lambda: _Worker(log, top_level), _parts(), 60, 10)
    assert len(log) == 1 and {c.kind for c in execution.lost.values()} == {"stopped"}
    assert len(execution.lost) == 4

    def crash(job):
        return WorkerRun(started=True, exec_done=True, stop=Crashed("SIGSEGV"),
                         running=job.calls[0].id)

    log = []
    execution = run_cases([_Worker(log, crash)], lambda: _Worker(log, crash), _parts(), 60, 10)
    assert [ids for _, ids, _ in log] == [["sdpa-shape-3d", "sdpa-match-3d"], ["sdpa-match-3d"],
                                          ["sdpa-match-4d", "mha-cross"], ["mha-cross"]]
    # the public part spends every restart: the hidden part gets its own worker, and none after it
    public = ("sdpa-shape-3d", "sdpa-shape-4d", "sdpa-match-3d", "sdpa-padding", "sdpa-causal")
    log = []
    execution = run_cases([_Worker(log, crash)], lambda: _Worker(log, crash), _parts(public), 60, 10)
    assert [ids[0] for _, ids, _ in log] == [*public[:MAX_RESTARTS + 1], "sdpa-match-4d"]
    assert execution.lost["sdpa-causal"] == NotRun("restarts", MAX_RESTARTS + 1)
    assert execution.lost["mha-cross"] == NotRun("restarts", MAX_RESTARTS + 2)


def test_the_plan_runs_public_cases_first_and_a_single_kind_in_one_worker():
    from grader.plan.plan import make_plan
    from grader.plan.slicing import parse_units
    from grader.plan.submission import read_submission

    parsed = parse_units(read_submission(ROOT / "tests" / "submissions" / "mha" / "correct_einsum.py").units)
    every = make_plan(parsed, MHA, {c.id for c in MHA.cases})
    public, hidden = every.runs
    assert all(not c.hidden for c in public) and all(c.hidden for c in hidden)
    assert [c.id for c in hidden] == HIDDEN and len(public) + len(hidden) == len(every.to_run)
    local = make_plan(parsed, MHA, {c.id for c in MHA.cases if not c.hidden})
    assert len(local.runs) == 1 and not any(c.hidden for c in local.runs[0])
    assert make_plan(parsed, MHA, set()).runs == ((),)


def test_cold_workers_two_with_hidden_cases_one_for_a_local_check(tmp_path, monkeypatch):
    """``grade``: a second cold worker for the hidden part; a student's local check (a released bundle, no
    hidden inputs) still grades its public cases, in one worker."""
    from grader import pipeline
    from grader.authoring.release import release
    from grader.course import resolve

    started = []

    class Counted(pipeline.Worker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(pipeline, "Worker", Counted)
    submission = ROOT / "tests" / "submissions" / "mha" / "correct_einsum.py"
    report = grade_submission(submission, GradeConfig(root=ROOT, sandbox="none"))
    assert report.all_passed and len(started) == 2
    folder = tmp_path / "student"
    folder.mkdir()
    release(MHA, folder, GradeConfig())  # (it grades the template it writes)
    started.clear()
    shutil.copy(submission, folder / "mha.py")
    monkeypatch.delenv("GRADER_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(resolve, "grader_checkout", lambda: None)
    local = grade_submission(folder / "mha.py", GradeConfig(sandbox="none"))
    assert local.local and len(started) == 1
    assert {c.status for c in local.cases if c.visibility == "hidden"} == {"pending"}
    assert all(c.status == "passed" for c in local.cases if c.visibility != "hidden")
