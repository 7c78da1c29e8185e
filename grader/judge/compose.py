"""The composer (pure): verdicts and notes, as facts, → the ``Report``, worded once.

Judging returns facts (``grader.judge.judge.Verdict``, ``Note``); this is the one place they
become words: each case's reason, details and hint (``grader.model.messages``), each distinct
cause's entry (``grader.judge.causes``), each note. Nothing before it words a sentence, and
nothing after it rewords one.
"""
from __future__ import annotations

from collections.abc import Iterable

from grader.judge.causes import group_causes
from grader.judge.judge import Verdict
from grader.model import messages
from grader.model.outcomes import Note, WrongAnswer
from grader.model.result import CaseResult, Report
from grader.spec.cases import Assignment


def compose_report(submission: str, assignment: Assignment, verdicts: Iterable[Verdict], *,
                   notes: Iterable[Note] = (), private_notes: Iterable[Note] = (), isolation: str = "",
                   execution_time: float = 0.0, local: bool = False, course: str = "") -> Report:
    """The report of ``verdicts``: every case worded, its causes grouped and worded, the notes worded.

    ``private_notes`` are what the hidden cases' workers showed (their output, stops, top-level
    errors): they may carry the hidden inputs, so they are for instructors only.
    """
    verdicts = tuple(verdicts)
    mistakes = {m.id: m for v in verdicts for m in v.mistakes}
    results, causes = group_causes(tuple(case_result(v) for v in verdicts), {c.id: c for c in assignment.cases},
                                   mistakes)
    notes = tuple(notes)
    return Report(submission=submission, assignment=assignment.name, cases=results,
                  notes=tuple(messages.note_text(n) for n in notes), note_facts=notes,
                  instructor_notes=tuple(messages.note_text(n) for n in private_notes), isolation=isolation,
                  execution_time=execution_time, local=local, course=course, causes=causes)


def case_result(v: Verdict) -> CaseResult:
    """One verdict, worded: its reason (a recognised mistake's name leads), the details, the hint."""
    case = v.case
    reason = details = hint = ""
    if v.cause is not None:
        reason = messages.cause_reason(v.cause, case, v.problems)
        details = messages.cause_details(v.cause, case, v.problems)
        hint = case.hint if v.hint_on else ""
    if v.mistakes:  # a recognised mistake outranks the case's own reason (kept below it) and hint
        lines = [reason, messages.cause_details(v.cause or WrongAnswer(), case, v.problems)]
        if v.score:
            lines.insert(0, messages.partial_credit(v.score, case.points))
        reason = messages.known_mistake([(m.name, m.hint) for m in v.mistakes])
        details, hint = "\n".join(x for x in lines if x), ""
    return CaseResult(case_id=case.id, name=case.name, target=case.target, status=v.status, score=v.score,
                      max_score=case.points, reason=reason, details=details, visibility=case.visibility,
                      duration=v.duration, figures=v.figures, cause=v.cause, problems=v.problems,
                      mistakes=tuple(m.id for m in v.mistakes), hint=hint)
