"""How the reports lay out their cases: the table's rows, grouped by class, and what each row shows.

Shared by the terminal and the HTML views, so both list the same rows, headings and
per-case details in the same order.
"""
from __future__ import annotations

from grader.model.messages import hidden_label, hint_line
from grader.model.messages import points as _points
from grader.model.result import CaseResult, Report


def case_points(c: CaseResult) -> str:
    """'1/2'; a case not graded yet shows '–/2' (no points lost)."""
    return f"–/{_points(c.max_score)}" if c.status == "pending" else f"{_points(c.score)}/{_points(c.max_score)}"


def case_rows(cases: tuple[CaseResult, ...]) -> list[tuple[str, CaseResult, str]]:
    """Each case with the class heading to print above it (where the class changes) and the name
    to show in its row (without the class, when it stands under its heading)."""
    out, last = [], None
    grouped = len({c.target for c in cases}) > 1 or any(_under_heading(c) != c.name for c in cases)
    for c in cases:
        name = _under_heading(c) if grouped else c.name
        out.append((c.target if grouped and c.target != last else "", c, labelled(c, name)))
        last = c.target
    return out


def labelled(c: CaseResult, name: str | None = None) -> str:
    """A case's name as the views show it: hidden cases are marked."""
    name = c.name if name is None else name
    return f"{name} {hidden_label()}" if c.visibility == "hidden" else name


def _under_heading(c: CaseResult) -> str:
    """A case's name under its class heading: 'shapes' for 'MultiHeadedAttention: shapes'."""
    prefix = c.target + ": "
    return c.name[len(prefix):] if c.name.startswith(prefix) and len(c.name) > len(prefix) else c.name


def more_details(report: Report) -> list[CaseResult]:
    """Cases whose own facts add to their cause's entry: the later cases of a wrong answer whose
    cases show different things, and any case whose hint is not its cause's fix."""
    out = []
    for c in report.cases:
        cause = report.cause(c.cause_ref) if c.cause_ref else None
        if cause is None or (c.visibility == "hidden" and report.audience == "student"):
            continue
        later = cause.varied and c.case_id != cause.cases[0] and bool(c.reason or c.details)
        if later or (c.hint and c.hint != cause.fix):
            out.append(c)
    return out


def case_body(c: CaseResult, cause_shown: bool) -> str:
    """What a case adds below its cause: its own reason and details (unless its cause's entry shows
    them already), and its hint."""
    lines = [] if cause_shown else [c.reason, c.details]
    return "\n".join(x for x in (*lines, hint_line(c.hint) if c.hint else "") if x)


def shown_in_cause(report: Report, c: CaseResult) -> bool:
    """True when the cause's entry already says what the case shows (it is the cause's first case, or
    its cases all show the same thing)."""
    cause = report.cause(c.cause_ref) if c.cause_ref else None
    return cause is not None and (not cause.varied or cause.cases[0] == c.case_id)


def shown_notes(report: Report) -> tuple[str, ...]:
    """The notes a view shows: all of them (a student's report has no instructor notes left)."""
    return report.notes + report.instructor_notes
