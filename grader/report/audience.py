"""Who reads the report: an instructor sees everything, a student nothing a hidden case produced.

``grade --audience student`` and every piece of feedback written for a student go through
``for_audience``. The public cases ran in a worker of their own, before the hidden ones and
without their inputs (``grader.pipeline``), so what they show is theirs alone. What a hidden
case produced is the submission's code speaking with the hidden inputs at hand: an exception's
message, the values, the output, the time it took, even which cause it shares. So in the
student audience a hidden case keeps its name, its points, its score and its result, and
nothing else: no reason, details, hint, attention maps, problems, cause or duration.

The causes are the public cases' only: each entry lists its public cases, costs what they
lost, and says what they show (``grader.judge.causes`` words an entry from its public cases,
and groups public cases by their own facts); every hidden case that lost points is counted in
one entry of its own, whatever its cause, after the public cases' (which may explain them).
The report's notes that came from the hidden cases' workers
(``Report.instructor_notes``) are dropped, and so is the grading's duration when hidden cases
ran (the code could spend it to say something). A student sees the submission by its file's name
and no course folder: the folders it was graded in are the server's.

In the instructor audience nothing is removed; the views label every hidden case.
"""
from __future__ import annotations

import dataclasses

from grader.model import messages
from grader.model.result import CaseResult, CauseSummary, Report

AUDIENCES = ("instructor", "student")


def for_audience(report: Report, audience: str) -> Report:
    """The report as ``audience`` may read it."""
    if audience not in AUDIENCES:
        raise ValueError(f"invalid audience {audience!r}, expected one of {', '.join(AUDIENCES)}")
    if audience == "instructor":
        return dataclasses.replace(report, audience="instructor")
    causes = _students_causes(report)
    number = {cid: cause.number for cause in causes for cid in cause.cases}
    cases = tuple(_hidden_view(c, number.get(c.case_id, 0)) if c.visibility == "hidden"
                  else dataclasses.replace(c, cause_ref=number.get(c.case_id, 0)) for c in report.cases)
    ran_hidden = any(c.visibility == "hidden" and c.status != "pending" for c in report.cases)
    return dataclasses.replace(report, cases=cases, causes=causes, instructor_notes=(), audience="student",
                               execution_time=0.0 if ran_hidden else report.execution_time,
                               submission=_file_name(report.submission), course="")


def _file_name(path: str) -> str:
    """A submission as a student knows it: its file's name, not the folder it was graded in (a server's
    grading folder, an LMS export's extraction)."""
    return path.replace("\\", "/").rstrip("/").rpartition("/")[2] or path


def _hidden_view(c: CaseResult, cause_ref: int) -> CaseResult:
    """A hidden case as a student sees it: name, points and result."""
    if c.status == "pending":
        return c
    return CaseResult(case_id=c.case_id, name=c.name, target=c.target, status=c.status, score=c.score,
                      max_score=c.max_score, reason=messages.hidden_case_reason(c.status), visibility="hidden",
                      cause_ref=cause_ref)


def _students_causes(report: Report) -> tuple[CauseSummary, ...]:
    """The causes of the public cases, each with its public cases only, numbered in the order of the first
    case each explains; then one entry for every hidden case that lost points."""
    by_id = {c.case_id: c for c in report.cases}
    order = {c.case_id: i for i, c in enumerate(report.cases)}
    entries = []
    for cause in report.causes:
        public = [by_id[cid] for cid in cause.cases if cid in by_id and by_id[cid].visibility != "hidden"]
        if not public:
            continue
        shows = {c.first_problem for c in public if c.first_problem}
        entries.append(dataclasses.replace(
            cause, cases=tuple(c.case_id for c in public), hidden_only=False,
            points_lost=round(sum(c.max_score - c.score for c in public), 6),
            seen_in=cause.seen_in if len(public) > 1 else "", varied=len(shows) > 1 and cause.kind != "mistake"))
    entries.sort(key=lambda e: order.get(e.cases[0], len(order)))
    hidden = [c for c in report.cases if c.visibility == "hidden" and c.cause_ref and c.status != "pending"]
    if hidden:
        entries.append(CauseSummary(0, "hidden", messages.hidden_cause_title(len(hidden)),
                                    tuple(c.case_id for c in hidden),
                                    round(sum(c.max_score - c.score for c in hidden), 6), hidden_only=True))
    return tuple(dataclasses.replace(e, number=i) for i, e in enumerate(entries, start=1))
