"""``grade_submission``: read, slice, run in a worker, check, and build the report.

One bad case never stops the others: when the submission's code crashes or hangs in a
case, that case is an error and the remaining cases run again in a fresh worker. A
submission that cannot be read still gets a report (score 0 and the reason). Only
grader bugs (``InternalError``) and usage mistakes (``UsageError``) raise.
"""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file

from grader.course.assignments import get_assignment, infer_assignment
from grader.spec.cases import Assignment
from grader.judge.checks import attention_figure, describe_student_error, evaluate_case, with_diagnosis
from grader.config import GradeConfig
from grader.errors import InternalError, SubmissionUnreadable, UsageError
from grader.execute.protocol import call_spec, clean_record, statement_payload
from grader.plan.policy import forbidden_uses
from grader.judge.diagnose import diagnose, load_mistakes, variant_runs
from grader.course.store import ReferenceRun, expected_outputs, fingerprint
from grader.report.result import CheckResult, Report
from grader.execute.runner import Worker
from grader.execute.sandbox import describe, resolve_mode
from grader.plan.slicing import ParsedSource, Slice, UnitSyntaxError, parse_units, slice_for
from grader.plan.submission import Submission, read_submission

#: How many fresh workers may replace one that crashed or hung, per submission.
MAX_RESTARTS = 3


@dataclass
class StudentRun:
    """The merged outcome of the worker(s) that ran a submission's cases."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: case id -> its tensor file (checked to be the worker's own and within the size limit)
    files: dict[str, Path] = field(default_factory=dict)
    #: case id -> why it has no record (it crashed or hung, or time ran out before it)
    lost: dict[str, str] = field(default_factory=dict)
    exec_errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def grade_submission(path: str | Path, config: GradeConfig | None = None) -> Report:
    """Grade one submission file and return its report."""
    config = config or GradeConfig()
    start = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    root = config.course_root(path)
    forced = get_assignment(root, config.assignment) if config.assignment else None
    with contextlib.ExitStack() as stack:
        workroot = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="grader-")))
        shared = workroot / "shared"
        shared.mkdir()
        mode = resolve_mode(config.sandbox)
        # Started first, so that its torch import overlaps reading, slicing and the reference.
        hide = (root, config.cache_dir)
        worker = stack.enter_context(Worker(workroot / "w0", mode, config.limits, (shared,), hide))
        try:
            submission = read_submission(path)
        except SubmissionUnreadable as e:
            return _unreadable(path, forced, str(e), start, mode)
        parsed = parse_units(submission.units)
        assignment = forced or _assignment_for(submission, parsed, root)
        sliced = slice_for(parsed, assignment.classes)
        reference = expected_outputs(assignment, config.cache_dir, config.use_cache)
        runnable = [c for c in assignment.cases if c.id in reference.records]
        inputs = shared / "inputs.safetensors"
        reference.write_inputs(inputs)
        inputs.chmod(0o644)  # readable by the sandboxed worker, which may run as nobody
        job = {"mode": "run", "inputs_file": str(inputs), **statement_payload(sliced.statements, "student")}
        calls = [call_spec(c, assignment) for c in runnable if c.target not in sliced.missing]
        run = _run_cases(worker, stack, workroot, job, calls, config, assignment, (shared,), hide)
        policy = {t.name: forbidden_uses(slice_for(parsed, [t.name]).statements, t.forbid)
                  for t in assignment.targets.values() if t.forbid and t.name not in sliced.missing}
        checks = _evaluate(assignment, reference, run, sliced, policy)
        local = len(runnable) < len(assignment.cases)
        if not local and any(c.status in ("failed", "error") for c in checks):
            checks = _diagnose(assignment, reference, checks, run, inputs, config)
    notes = [detail for _, detail in sliced.missing.values()] + list(sliced.notes)
    notes += [e.describe() for e in parsed.syntax_errors if not _explains_missing(e, sliced)]
    notes += [f"{describe_student_error(e, None, '')} (this statement was skipped)" for e in run.exec_errors]
    notes += run.notes
    if local:
        notes.insert(0, "Local check: only the public cases ran, against the released fixtures. "
                        f"Hidden cases ({sum(c.points for c in assignment.cases if c.id not in reference.records):g} "
                        "points) are graded after you submit.")
    return Report(str(path), assignment.name, tuple(checks), None, tuple(notes), describe(mode),
                  round(time.perf_counter() - start, 3), local=local)


def _run_cases(worker: Worker, stack: contextlib.ExitStack, workroot: Path, job: dict[str, Any],
               calls: list[dict[str, Any]], config: GradeConfig, assignment: Assignment,
               shared: tuple[Path, ...], hide: tuple[Path, ...]) -> StudentRun:
    """Run every call; after a crash or hang, continue the rest in a fresh worker."""
    merged = StudentRun()
    deadline = time.perf_counter() + (assignment.timeout or config.timeout)
    for attempt in range(MAX_RESTARTS + 1):
        run = worker.run(dict(job, calls=calls), max(deadline - time.perf_counter(), 0.1), config.case_timeout)
        if run.internal:
            raise InternalError(f"the grader's worker failed:\n{run.internal}")
        if not run.started:  # nothing of the submission ran yet: the grader's environment is at fault
            raise InternalError(f"the grader's worker could not start ({run.stopped}):\n{run.stderr[-2000:]}")
        if attempt == 0:
            merged.exec_errors = run.exec_errors
        for cid, raw in run.calls.items():
            merged.calls[cid] = clean_record(raw)
            host_file = worker.output_file(raw)
            if host_file is not None:
                merged.files[cid] = host_file
        if run.finished:
            break
        if run.stopped and run.stderr.strip():
            merged.notes.append("Last output of your code before it stopped: "
                                + " ".join(run.stderr.strip().splitlines()[-3:])[-300:])
        if run.running == "":  # stopped in top-level code: every case would hit it again
            merged.notes.append(f"Your top-level code {run.stopped}; no case could run.")
            merged.lost.update({c["id"]: f"your top-level code {run.stopped}" for c in calls})
            break
        if run.running:
            merged.lost[run.running] = f"your code {run.stopped} in this case"
            merged.notes.append(f"Your code {run.stopped} in case {run.running!r}.")
        calls = [c for c in calls if c["id"] not in merged.calls and c["id"] not in merged.lost]
        if not calls:
            break
        if deadline - time.perf_counter() <= 0 or attempt == MAX_RESTARTS:
            why = ("the time limit for the submission ran out" if deadline - time.perf_counter() <= 0
                   else f"your code stopped the grader's process {MAX_RESTARTS + 1} times")
            merged.lost.update({c["id"]: f"not run: {why}" for c in calls})
            break
        worker = stack.enter_context(Worker(workroot / f"w{attempt + 1}", worker.mode, config.limits, shared, hide))
    return merged


def _assignment_for(submission: Submission, parsed: ParsedSource, root: Path) -> Assignment:
    if submission.assignment:
        return get_assignment(root, submission.assignment)
    return infer_assignment(root, parsed.class_names())


def _evaluate(assignment: Assignment, reference: ReferenceRun, run: StudentRun, sliced: Slice,
              policy: dict[str, list[str]]) -> list[CheckResult]:
    checks = []
    for case in assignment.cases:
        if case.id not in reference.records:  # a hidden case in a student bundle
            checks.append(CheckResult(case.id, case.name, case.target, "pending", 0.0, case.points,
                                      f"graded after submission ({case.points:g} point{'' if case.points == 1 else 's'})", "", "hidden"))
            continue
        record = run.calls.get(case.id)
        if record is not None and case.target in policy:
            record = dict(record, policy=policy[case.target])
        tensors = _load_tensors(run.files.get(case.id))
        if case.target in sliced.missing:
            unavailable = sliced.missing[case.target][0]
        else:
            unavailable = run.lost.get(case.id, "not run")
        target = assignment.targets[case.target]
        result = evaluate_case(case, target, reference.for_case(case.id), reference.records[case.id], tensors,
                               record, unavailable, assignment.custom_checks)
        figure = attention_figure(case, target, reference.for_case(case.id), tensors)
        checks.append(dataclasses.replace(result, figures=(figure,)) if figure else result)
    return checks


def _diagnose(assignment: Assignment, reference: ReferenceRun, checks: list[CheckResult], run: StudentRun,
              inputs: Path, config: GradeConfig) -> list[CheckResult]:
    """Name the known mistakes that failed cases' outputs match (see grader.judge.diagnose)."""
    mistakes = load_mistakes(assignment.folder)
    if not mistakes:
        return checks
    variants = variant_runs(assignment, inputs, fingerprint(assignment), config.cache_dir, config.use_cache)
    cases = {c.id: c for c in assignment.cases}
    out = []
    for result in checks:
        if result.status in ("failed", "error") and result.case_id in run.calls:
            case = cases[result.case_id]
            found = diagnose(case, reference.for_case(case.id), _load_tensors(run.files.get(case.id)),
                             run.calls[case.id], variants, mistakes)
            result = with_diagnosis(result, [(m.name, m.hint) for m in found])
        out.append(result)
    return out


def _load_tensors(path: Path | None) -> dict[str, Any]:
    """A worker's tensors as numpy arrays; only plain numeric dtypes are accepted."""
    if path is None:
        return {}
    try:
        tensors = load_file(str(path))
    except Exception:  # a corrupt or forged file is the submission's problem, not ours
        return {}
    return {k: v for k, v in tensors.items() if v.dtype.kind in "fiub"}


def _explains_missing(error: UnitSyntaxError, sliced: Slice) -> bool:
    return any(error.describe() in detail for _, detail in sliced.missing.values())


def _unreadable(path: Path, assignment: Assignment | None, reason: str, start: float, mode: str) -> Report:
    return Report(str(path), assignment.name if assignment else None, (), reason, (), describe(mode),
                  round(time.perf_counter() - start, 3),
                  declared_max_score=assignment.max_score if assignment else 0.0)
