"""The plain result model: what a grading run found, with no presentation in it.

Everything here is JSON-able (``to_dict``/``from_dict``) so reports can be stored,
compared in tests and rendered by ``grader.report.render`` in any format. Text fields are
made safe (``grader.model.text.safe_text``) as the model is built: this is the one
boundary every student-derived string crosses on its way to a report.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from grader.model.outcomes import Cause, Fact, Note, Problem
from grader.model.text import safe_text, shortened

Status = Literal["passed", "failed", "error", "pending"]
STATUSES: tuple[str, ...] = ("passed", "failed", "error", "pending")
#: The decimals a figure's weights keep (``CaseResult.figures``): one unit of the last is rounding, not a
#: difference.
FIGURE_DECIMALS = 4


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one graded case.

    ``status`` is ``passed``, ``failed`` (the code ran and gave a wrong answer),
    ``error`` (the student's code could not run: syntax error, exception, crash, timeout)
    or ``pending`` (a hidden case in a student's local check: graded after submission).
    ``reason`` is one line for tables; ``details`` what follows it (never the reason again);
    ``hint`` the case's hint, kept only where the failure shows what the hint is about.
    ``cause`` and ``problems`` say the same as data; ``mistakes`` are the ids of the known
    mistakes its outputs match.
    """

    case_id: str
    name: str
    target: str
    status: Status
    score: float
    max_score: float
    reason: str = ""
    details: str = ""
    #: "public" or "hidden", as the case file says
    visibility: str = "public"
    duration: float = 0.0
    #: small pictures worth showing (attention maps: expected, got, mask), as plain lists
    figures: tuple[dict[str, Any], ...] = ()
    cause: Cause | None = None
    problems: tuple[Problem, ...] = ()
    mistakes: tuple[str, ...] = ()
    #: the number of this case's entry in ``Report.causes`` (0: none, e.g. passed)
    cause_ref: int = 0
    hint: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"invalid status {self.status!r}, expected one of {', '.join(STATUSES)}")
        object.__setattr__(self, "name", safe_text(self.name, one_line=True))
        object.__setattr__(self, "reason", safe_text(self.reason, one_line=True))
        object.__setattr__(self, "details", safe_text(self.details))
        object.__setattr__(self, "hint", safe_text(self.hint))

    @property
    def first_problem(self) -> tuple[str, str] | None:
        """What its first problem shows (its kind and the output it names): cases that lost points for one
        cause but show different things are told apart by it."""
        return (self.problems[0].kind, str(self.problems[0].output)) if self.problems else None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CaseResult":
        """Inverse of ``dataclasses.asdict``."""
        kw = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        if kw.get("visibility") == "visible":  # reports written before "public" was the word
            kw["visibility"] = "public"
        kw["figures"] = tuple(d.get("figures", ()))
        kw["cause"] = Cause.from_dict(d["cause"]) if d.get("cause") else None
        kw["problems"] = tuple(Problem.from_dict(p) for p in d.get("problems", ()))
        kw["mistakes"] = tuple(d.get("mistakes", ()))
        return cls(**kw)


#: The longest line a cause's title or location may be (the evidence keeps the whole message).
MAX_TITLE = 300


@dataclass(frozen=True)
class CauseSummary:
    """One distinct reason for lost points, said once: what, where, the fix, and what it costs.

    ``number`` is what the cases' ``cause_ref`` point to (1, 2, ... in the order of the cases
    they explain); ``kind`` is the cause's kind, or ``mistake`` for a recognised mistake;
    ``evidence`` is what the first of its cases showed (a traceback, the values that differ).
    """

    number: int
    kind: str
    title: str
    cases: tuple[str, ...]
    points_lost: float
    where: str = ""
    fix: str = ""
    evidence: str = ""
    #: the case whose facts ``evidence`` shows
    seen_in: str = ""
    #: its cases show different things (other outputs differ): each case's own facts are worth a look
    varied: bool = False
    #: every case it explains is hidden (a student's report says nothing more of it)
    hidden_only: bool = False

    def __post_init__(self) -> None:
        for name in ("title", "where", "seen_in"):  # one line each, however long a student's message
            object.__setattr__(self, name, shortened(safe_text(getattr(self, name), one_line=True), MAX_TITLE))
        for name in ("fix", "evidence"):
            object.__setattr__(self, name, safe_text(getattr(self, name)))
        object.__setattr__(self, "cases", tuple(self.cases))


@dataclass(frozen=True, repr=False)
class Report:
    """A whole submission's grade: its cases, total, and what stopped grading (if anything)."""

    submission: str
    assignment: str | None
    cases: tuple[CaseResult, ...] = ()
    #: Why the submission could not be graded at all (unreadable file, ...), else None.
    problem: str | None = None
    #: Notes about the submission shown above the table (e.g. a cell with a syntax error).
    notes: tuple[str, ...] = ()
    isolation: str = ""
    execution_time: float = 0.0
    #: Maximum score when no cases could be listed (unreadable submission).
    declared_max_score: float | None = None
    #: True for a student's local check: public cases only, hidden ones pending.
    local: bool = False
    #: The course folder the cases came from.
    course: str = ""
    #: Each distinct reason for lost points once, in the order of the cases it explains.
    causes: tuple[CauseSummary, ...] = ()
    #: Notes that may carry what a hidden case showed (the code's own output): for instructors only.
    instructor_notes: tuple[str, ...] = ()
    #: Who the report is for: "instructor" (everything, hidden cases labelled) or "student"
    #: (hidden cases by name, points and result only; ``grader.report.audience``).
    audience: str = "instructor"
    #: ``notes`` as facts (``Note``), in the same order, for programs that read what happened
    note_facts: tuple[Note, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "submission", safe_text(self.submission, one_line=True))
        object.__setattr__(self, "notes", tuple(safe_text(n) for n in self.notes))
        object.__setattr__(self, "instructor_notes", tuple(safe_text(n) for n in self.instructor_notes))
        if self.problem is not None:
            object.__setattr__(self, "problem", safe_text(self.problem))

    def __repr__(self) -> str:  # what a notebook shows after check(): one line, not every field
        return f"<Report {self.assignment or '?'}: {self.score:g}/{self.max_score:g} for {self.submission}>"

    def cause(self, number: int) -> CauseSummary | None:
        """The cause a case's ``cause_ref`` points to."""
        return next((c for c in self.causes if c.number == number), None)

    @property
    def score(self) -> float:
        """The sum of the cases' scores."""
        return round(sum(c.score for c in self.cases), 6)

    @property
    def max_score(self) -> float:
        """The sum of the cases' maximum scores (hidden cases of a local check excluded)."""
        if not self.cases and self.declared_max_score is not None:
            return self.declared_max_score
        return round(sum(c.max_score for c in self.cases if c.status != "pending"), 6)

    @property
    def pending_points(self) -> float:
        """Points of hidden cases not graded here (a local check)."""
        return round(sum(c.max_score for c in self.cases if c.status == "pending"), 6)

    @property
    def all_passed(self) -> bool:
        """True when the submission was graded and every case that ran passed."""
        ran = [c for c in self.cases if c.status != "pending"]
        return self.problem is None and bool(ran) and all(c.status == "passed" for c in ran)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (the ``--format json`` output)."""
        d = _plain(self)
        d["notes"] = list(self.notes)
        d["instructor_notes"] = list(self.instructor_notes)
        d["score"] = self.score
        d["max_score"] = self.max_score
        d["pending_points"] = self.pending_points
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """Inverse of ``to_dict``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["cases"] = tuple(CaseResult.from_dict(c) for c in d.get("cases", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        kw["instructor_notes"] = tuple(d.get("instructor_notes", ()))
        kw["causes"] = tuple(CauseSummary(**c) for c in d.get("causes", ()))
        kw["note_facts"] = tuple(Note.from_dict(n) for n in d.get("note_facts", ()))
        return cls(**kw)


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` for the report's own values (dataclasses, tuples, lists, dicts and scalars),
    without its deep copies: a report's figures hold thousands of numbers, and this runs for every
    submission a batch stores."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_fields"):  # a named tuple
            return type(value)(*(_plain(x) for x in value))
        if all(type(x) in _SCALARS for x in value):
            return type(value)(value)
        return type(value)(_plain(x) for x in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Fact):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return copy.deepcopy(value)
