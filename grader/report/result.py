"""The plain result model: what a grading run found, with no presentation in it.

Everything here is JSON-able (``to_dict``/``from_dict``) so reports can be stored,
compared in tests and rendered by ``grader.report.render`` in any format.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "error", "pending"]
STATUSES: tuple[str, ...] = ("passed", "failed", "error", "pending")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one graded case.

    ``status`` is ``passed``, ``failed`` (the code ran and gave a wrong answer),
    ``error`` (the student's code could not run: syntax error, exception, crash, timeout)
    or ``pending`` (a hidden case in a student's local check: graded after submission).
    ``reason`` is one line for tables; ``details`` the longer explanation.
    """

    case_id: str
    name: str
    target: str
    status: Status
    score: float
    max_score: float
    reason: str = ""
    details: str = ""
    visibility: str = "visible"
    duration: float = 0.0
    #: small pictures worth showing (attention maps: expected, got, mask), as plain lists
    figures: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"invalid status {self.status!r}, expected one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class Report:
    """A whole submission's grade: its checks, total, and what stopped grading (if anything)."""

    submission: str
    assignment: str | None
    checks: tuple[CheckResult, ...] = ()
    #: Why the submission could not be graded at all (unreadable file, ...), else None.
    problem: str | None = None
    #: Notes about the submission shown above the table (e.g. a cell with a syntax error).
    notes: tuple[str, ...] = ()
    isolation: str = ""
    execution_time: float = 0.0
    #: Maximum score when no checks could be listed (unreadable submission).
    declared_max_score: float | None = None
    #: True for a student's local check: public cases only, hidden ones pending.
    local: bool = False

    @property
    def score(self) -> float:
        """The sum of the checks' scores."""
        return round(sum(c.score for c in self.checks), 6)

    @property
    def max_score(self) -> float:
        """The sum of the checks' maximum scores."""
        if not self.checks and self.declared_max_score is not None:
            return self.declared_max_score
        return round(sum(c.max_score for c in self.checks if c.status != "pending"), 6)

    @property
    def pending_points(self) -> float:
        """Points of hidden cases not graded here (a local check)."""
        return round(sum(c.max_score for c in self.checks if c.status == "pending"), 6)

    @property
    def all_passed(self) -> bool:
        """True when the submission was graded and every check that ran passed."""
        ran = [c for c in self.checks if c.status != "pending"]
        return self.problem is None and bool(ran) and all(c.status == "passed" for c in ran)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (the ``--format json`` output)."""
        d = dataclasses.asdict(self)
        d["checks"] = [dataclasses.asdict(c) for c in self.checks]
        d["notes"] = list(self.notes)
        d["score"] = self.score
        d["max_score"] = self.max_score
        d["pending_points"] = self.pending_points
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """Inverse of ``to_dict``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["checks"] = tuple(CheckResult(**{**c, "figures": tuple(c.get("figures", ()))}) for c in d.get("checks", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        return cls(**kw)
