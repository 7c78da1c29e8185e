"""The plan stage (pure): from a parsed submission and an assignment, what to run and what is known already.

Nothing here starts a process or words a sentence for a student: missing classes, syntax
errors and forbidden calls found in the source are facts (``Cause``, ``Problem``, ``Note``),
worded later by ``grader.report.messages``. The forbidden-call verdict found here does not
depend on the worker: it holds even when the submission never runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from grader.plan.policy import forbidden_uses
from grader.plan.slicing import ParsedSource, Slice, UnitSyntaxError, slice_for
from grader.report.messages import missing_explanation
from grader.report.outcomes import Cause, Note, Problem
from grader.spec.cases import Assignment, Case

#: The template's blank: a statement that still holds it is not implemented yet.
BLANK_MARKER = "FILL IN"


@dataclass(frozen=True)
class Plan:
    """What to run for one submission, and what is known before running it."""

    assignment: Assignment
    parsed: ParsedSource
    #: the statements every graded class needs (all targets together)
    sliced: Slice
    #: cases whose expected outputs are here (in a student's local check: the public ones)
    runnable: tuple[Case, ...]
    #: the runnable cases the worker must run (their class is defined)
    to_run: tuple[Case, ...]
    #: target -> why it cannot run (not defined, a blank, a syntax error)
    missing: dict[str, Cause]
    #: target -> forbidden APIs its code uses, found in the source
    forbidden: dict[str, tuple[Problem, ...]]
    notes: tuple[Note, ...]

    @property
    def local(self) -> bool:
        """True when only some cases can run here: a student's local check against released fixtures."""
        return len(self.runnable) < len(self.assignment.cases)


def make_plan(parsed: ParsedSource, assignment: Assignment, available: set[str]) -> Plan:
    """Plan grading ``parsed`` against ``assignment``; ``available``: ids of cases with expected outputs."""
    sliced = slice_for(parsed, assignment.classes)
    missing = {name: missing_cause(parsed, name) for name in sliced.missing}
    explaining = {id(e) for e in (_defining_error(parsed, name) for name in missing) if e is not None}
    runnable = tuple(c for c in assignment.cases if c.id in available and not c.placeholder)
    to_run = tuple(c for c in runnable if c.target not in missing)
    forbidden = {t.name: tuple(_forbidden_problems(parsed, t.name, t.forbid))
                 for t in assignment.targets.values() if t.forbid and t.name not in missing}
    notes = [Note("missing_target", {"text": c.data["explanation"]}) for c in missing.values()]
    notes += [Note("text", {"text": n}) for n in sliced.notes]
    notes += [Note("syntax_error", {"text": e.describe()}) for e in parsed.syntax_errors if id(e) not in explaining]
    return Plan(assignment, parsed, sliced, runnable, to_run, missing, forbidden, tuple(notes))


def missing_cause(parsed: ParsedSource, name: str) -> Cause:
    """Why the graded class ``name`` cannot run: a blank, a syntax error in its cell, or not defined."""
    error = _defining_error(parsed, name)
    if error is None:
        return Cause("missing_target", {"target": name, "explanation": missing_explanation(name, "missing_target")})
    where = f"{error.unit.label}, line {error.lineno}"
    code = error.text.strip()
    kind = "not_implemented" if BLANK_MARKER in error.text else "syntax_error"
    return Cause(kind, {"target": name, "label": error.unit.label, "line": error.lineno, "code": code,
                        "explanation": missing_explanation(name, kind, where, code, error.message)})


def _defining_error(parsed: ParsedSource, name: str) -> UnitSyntaxError | None:
    """The last unparseable unit that defines ``class name`` (its statements are unknown)."""
    pattern = re.compile(rf"^\s*class\s+{re.escape(name)}\b", re.M)
    for err in reversed(parsed.syntax_errors):
        if pattern.search(err.unit.source):
            return err
    return None


def _forbidden_problems(parsed: ParsedSource, target: str, forbid: tuple[str, ...]) -> list[Problem]:
    statements = slice_for(parsed, [target]).statements
    return [Problem("forbidden_static", {"text": text}) for text in forbidden_uses(statements, forbid)]
