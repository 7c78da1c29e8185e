"""``grade_submission``: plan → execute → judge, and the report.

    course  = resolve_course(...)                     which course, trusted or not
    plan    = make_plan(parsed, assignment, ...)      pure: what to run, what the source shows
    outcome = run_cases(workers, ..., parts, ...)     processes: observations, or why not
    verdicts = judge(plan, expected, outcome)         pure: verdicts as facts, known mistakes named
    report  = compose_report(..., verdicts, ...)      every word of the report, made once

A submission that cannot be read still gets a report (score 0 and the reason). Only grader
bugs (``InternalError``) and usage mistakes (``UsageError``) raise.

The public cases run first in a worker of their own, the hidden ones after in a fresh one
(``Plan.runs``): a public case never runs in a process that was given a hidden case's inputs, and
what the hidden cases' workers showed is for instructors (``Report.instructor_notes``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from grader.config import GradeConfig
from grader.course.assignments import get_assignment, infer_assignment
from grader.course.resolve import Course, resolve_course
from grader.course.reference_outputs import expected_outputs, variant_outputs
from grader.errors import InternalError, SubmissionUnreadable, UsageError
from grader.execute.jobs import call_spec, make_job
from grader.execute.runner import Worker
from grader.execute.sandbox import describe, readable_unsandboxed, resolve_mode
from grader.execute.execution import Execution, Part, run_cases
from grader.execute.slots import WarmSlot, worth_preloading
from grader.judge.compose import compose_report
from grader.judge.judge import judge, name_mistakes, not_run
from grader.plan.plan import Plan, make_plan
from grader.plan.slicing import ParsedSource, parse_units
from grader.plan.submission import Submission, read_submission
from grader.model.outcomes import CoursePassedOver, LocalCheck, MissingClass, Note, NotRun, UntrustedCourse
from grader.model.result import Report
from grader.spec.cases import Assignment
from grader.spec.mistakes import load_mistakes


def grade_submission(path: str | Path, config: GradeConfig | None = None, slot: WarmSlot | None = None) -> Report:
    """Grade one submission file and return its report.

    ``slot``: a warm worker slot to fork the workers from (``grade batch``), made with the
    same sandbox mode and limits as ``config``'s; without it, each worker starts cold.
    """
    config = config or GradeConfig()
    path = Path(path)
    if not os.path.lexists(path):
        raise UsageError(f"no such file: {path}")
    return _grade(path, lambda: read_submission(path), config, slot=slot)


def grade_source(submission: Submission, config: GradeConfig | None = None, notes: Iterable[Note] = (),
                 name: str | None = None) -> Report:
    """Grade source units already read (``check()``: what a Jupyter kernel ran), exactly as a file is graded.

    ``submission.path`` stands for where the code came from (the course beside it, the folder
    hidden from the sandbox) and need not exist; ``notes`` lead the report's notes; ``name`` is
    what the report calls the submission (default: the path).
    """
    report = _grade(submission.path, lambda: submission, config or GradeConfig(), tuple(notes))
    return dataclasses.replace(report, submission=name) if name else report


def _grade(path: Path, read: Callable[[], Submission], config: GradeConfig, lead: tuple[Note, ...] = (),
           slot: WarmSlot | None = None) -> Report:
    """Both entry points: ``read`` gives the submission while the worker starts; ``lead`` notes come first."""
    start = time.perf_counter()
    course = resolve_course(config.root, path)
    forced = get_assignment(course, config.assignment) if config.assignment else None
    mode = resolve_mode(config.sandbox)
    hide = (course.root, config.cache_dir, path.absolute().parent.resolve())  # the folder, never a link's target
    secrets = (course.root / "reference", config.cache_dir)  # what unsandboxed code must not read
    if slot is not None and (slot.mode != mode or slot.limits != config.limits):
        raise InternalError("a warm slot was made for another sandbox or other limits than this grading's")
    with contextlib.ExitStack() as stack:
        def new_worker() -> Worker:
            return stack.enter_context(slot.new_worker() if slot is not None else Worker(mode, config.limits, hide))

        worker = new_worker()  # started first: its torch import overlaps reading, slicing and the reference
        try:
            submission = read()
        except SubmissionUnreadable as e:
            return Report(submission=str(path), assignment=forced.name if forced else None, problem=str(e),
                          isolation=_isolation(mode, worker, secrets),
                          execution_time=round(time.perf_counter() - start, 3),
                          declared_max_score=forced.max_score if forced else 0.0, course=str(course.root))
        parsed = parse_units(submission.units)
        assignment = forced or _assignment_for(course, submission, parsed)
        reference = expected_outputs(assignment, config)
        expected = reference.observations
        plan = make_plan(parsed, assignment, set(expected))
        if slot is not None:  # what this code's workers would import themselves, imported once in the zygote
            slot.prefer(worth_preloading(s.source for s in plan.sliced.statements))
        parts = [Part(make_job("run", plan.sliced.statements, "student",
                               [call_spec(c, assignment, watch_forbidden=True) for c in cases]),
                      reference.inputs({c.id for c in cases}), private=any(c.hidden for c in cases))
                 for cases in plan.runs]
        # A cold worker for the hidden part starts now, its import overlapping the public part's run;
        # a warm slot holds one child at a time, so its fork comes after the public part's clean-up.
        started = [worker, *(new_worker() for _ in parts[1:] if slot is None)]
        execution = run_cases(started, new_worker, parts, assignment.timeout or config.timeout,
                              config.case_timeout)
        stack.close()  # the workers are done: a warm slot's zygote cleans up while we judge
        verdicts = judge(plan, expected, execution)
        if not plan.local and any(v.status in ("failed", "error") for v in verdicts):
            mistakes = load_mistakes(assignment.folder)
            if mistakes:
                variants = variant_outputs(assignment, reference, config)
                verdicts = name_mistakes(verdicts, plan, expected, execution, variants, mistakes)
    # What the hidden cases' workers showed (their output, stops, top-level errors) may carry their inputs.
    return compose_report(str(path), assignment, verdicts, notes=(*lead, *_notes(plan, execution, course)),
                          private_notes=execution.private_notes, isolation=_isolation(mode, worker, secrets),
                          execution_time=round(time.perf_counter() - start, 3), local=plan.local,
                          course=str(course.root))


def machine_lost_report(submission: str, assignment: Assignment, course: str, deaths: int) -> Report:
    """The report of a submission whose grading ended the grading machine's process each time, the last
    time with nothing else running (``grade batch --scheduler``: a Dask worker died with it ``deaths``
    times): every case not run, status ``error``. Never the student's zero by mistake: the instructor
    sees it listed and can grade it again with ``--student``."""
    return compose_report(submission, assignment, not_run(assignment, NotRun("machine", deaths)), course=course)


def _isolation(mode: str, worker: Worker, secrets: tuple[Path, ...] = ()) -> str:
    """The report's isolation line: the sandbox (without one: whether the code could read ``secrets``, the
    course's reference and the cache), and how the submission's processes are held."""
    readable = mode != "bwrap" and readable_unsandboxed(list(secrets), own_uid=worker.uid is not None)
    worker.wait_ready()  # what holds its processes is settled once its group holds it
    return f"{describe(mode, readable)}; {worker.group.describe()}" + ("; a fresh process forked from a warm worker"
                                                                         if worker.forked else "")


def _assignment_for(course: Course, submission: Submission, parsed: ParsedSource) -> Assignment:
    if submission.assignment:
        return get_assignment(course, submission.assignment)
    return infer_assignment(course, parsed.class_names())


def _notes(plan: Plan, execution: Execution, course: Course) -> list[Note]:
    graded = {c.target for c in plan.runnable}  # a class missing with cases to run is a cause, said there
    notes = [n for n in plan.notes if not isinstance(n, MissingClass) or n.cause.target not in graded]
    notes += list(execution.notes)
    if plan.local:
        hidden = sum(c.points for c in plan.assignment.cases if c not in plan.runnable)
        notes.insert(0, LocalCheck(hidden))
    if not course.trusted:
        notes.insert(0, UntrustedCourse(str(course.root)))
    if course.passed_over is not None:
        notes.insert(0, CoursePassedOver(str(course.root), str(course.passed_over)))
    return notes
