"""Who reads the report: an instructor sees everything, a student nothing of the hidden cases' data.

``grade --audience student`` and every piece of feedback written for a student go through
``for_audience``. In the student audience a hidden case keeps its name, its points and
whether it passed; its reason, details, hint, attention maps, problems and the facts of its
cause are dropped, and a cause that only hidden cases show is named as such, without its
words (an exception's message can quote a hidden input's shape). A cause shared with
public cases keeps its words, which ``grader.judge.causes`` takes from a public case. Notes
that may carry the code's own output from a hidden case are for instructors only.

In the instructor audience nothing is removed; the views label every hidden case.
"""
from __future__ import annotations

import dataclasses

from grader.report import messages
from grader.report.outcomes import Cause
from grader.report.result import CaseResult, CauseSummary, Report

AUDIENCES = ("instructor", "student")


def for_audience(report: Report, audience: str) -> Report:
    """The report as ``audience`` may read it."""
    if audience not in AUDIENCES:
        raise ValueError(f"invalid audience {audience!r}, expected one of {', '.join(AUDIENCES)}")
    if audience == "instructor":
        return dataclasses.replace(report, audience="instructor")
    cases = tuple(_hidden_view(c) if c.visibility == "hidden" else c for c in report.cases)
    causes = tuple(_hidden_cause(c) if c.hidden_only else c for c in report.causes)
    return dataclasses.replace(report, cases=cases, causes=causes, instructor_notes=(), audience="student")


def _hidden_view(c: CaseResult) -> CaseResult:
    """A hidden case as a student sees it: name, points and result."""
    if c.status == "pending":
        return c
    return CaseResult(c.case_id, c.name, c.target, c.status, c.score, c.max_score,
                      messages.hidden_case_reason(c.status), "", "hidden", c.duration,
                      cause=Cause(c.cause.kind) if c.cause is not None else None, cause_ref=c.cause_ref)


def _hidden_cause(c: CauseSummary) -> CauseSummary:
    return CauseSummary(c.number, "hidden", messages.hidden_cause_title(len(c.cases)), c.cases, c.points_lost,
                        hidden_only=True)
