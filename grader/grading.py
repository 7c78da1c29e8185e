"""``grade_submission``: read, slice, run in a worker, check, and build the report.

One bad case never stops the others; a submission that cannot be read still gets a
report (score 0 and the reason). Only grader bugs raise (``InternalError``) and usage
mistakes (``UsageError``).
"""
from __future__ import annotations

import time
from pathlib import Path

from safetensors.numpy import load_file

from grader.assignments import get_assignment, infer_assignment
from grader.cases import Assignment
from grader.checks import describe_student_error, evaluate_case
from grader.config import GradeConfig
from grader.errors import InternalError, SubmissionUnreadable, UsageError
from grader.protocol import call_spec, statement_payload
from grader.reference import ReferenceRun, reference_outputs
from grader.result import CheckResult, Report
from grader.runner import ISOLATION, Worker, WorkerRun
from grader.slicing import Slice, UnitSyntaxError, parse_units, slice_for
from grader.submission import Submission, read_submission


def grade_submission(path: str | Path, config: GradeConfig | None = None) -> Report:
    """Grade one submission file and return its report."""
    config = config or GradeConfig()
    start = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    forced = get_assignment(config.root, config.assignment) if config.assignment else None
    with Worker() as worker:  # started now so that its torch import overlaps our work
        try:
            submission = read_submission(path)
        except SubmissionUnreadable as e:
            return _unreadable(path, forced, str(e), start)
        assignment = forced or _assignment_for(submission, config)
        parsed = parse_units(submission.units)
        sliced = slice_for(parsed, assignment.classes)
        reference = reference_outputs(assignment, config.cache_dir, config.use_cache)
        reference.write_inputs(worker.workdir / "inputs.safetensors")
        job = {"mode": "run", "inputs_file": str(worker.workdir / "inputs.safetensors"),
               "calls": [call_spec(c, assignment) for c in assignment.cases if c.target not in sliced.missing],
               **statement_payload(sliced.statements, "student")}
        run = worker.run(job, assignment.timeout or config.timeout)
        if run.internal:
            raise InternalError(f"the grader's worker failed:\n{run.internal}")
        checks = _evaluate(assignment, reference, run, sliced)
    notes = [detail for _, detail in sliced.missing.values()] + list(sliced.notes)
    notes += [e.describe() for e in parsed.syntax_errors if not _explains_missing(e, sliced)]
    notes += [f"{describe_student_error(e, None, '')} (this statement was skipped)" for e in run.exec_errors]
    if run.stopped:
        notes.append(f"Your code {run.stopped}" + (f" while running case {run.running!r}" if run.running else "")
                     + "; the cases it had not finished are marked as errors.")
    return Report(str(path), assignment.name, tuple(checks), None, tuple(notes), ISOLATION,
                  round(time.perf_counter() - start, 3))


def _assignment_for(submission: Submission, config: GradeConfig) -> Assignment:
    if submission.assignment:
        return get_assignment(config.root, submission.assignment)
    return infer_assignment(config.root, parse_units(submission.units).class_names())


def _evaluate(assignment: Assignment, reference: ReferenceRun, run: WorkerRun, sliced: Slice) -> list[CheckResult]:
    checks = []
    for case in assignment.cases:
        record = run.calls.get(case.id)
        tensors = load_file(record["file"]) if record and record.get("file") else {}
        unavailable = sliced.missing[case.target][0] if case.target in sliced.missing else None
        if record is None and unavailable is None:
            if run.stopped and run.running == case.id:
                unavailable = f"your code {run.stopped} while running this case"
            elif run.stopped:
                unavailable = f"not run: your code {run.stopped} on an earlier case"
            else:
                unavailable = "not run"
        checks.append(evaluate_case(case, assignment.targets[case.target], reference.for_case(case.id),
                                    reference.records[case.id], tensors, record, unavailable))
    return checks


def _explains_missing(error: UnitSyntaxError, sliced: Slice) -> bool:
    return any(error.describe() in detail for _, detail in sliced.missing.values())


def _unreadable(path: Path, assignment: Assignment | None, reason: str, start: float) -> Report:
    return Report(str(path), assignment.name if assignment else None, (), reason, (), ISOLATION,
                  round(time.perf_counter() - start, 3),
                  declared_max_score=assignment.max_score if assignment else 0.0)
