"""The plan stage (pure): from a parsed submission and an assignment, what to run and what is known already.

Nothing here starts a process or words a sentence for a student: missing classes, syntax
errors and forbidden calls found in the source are facts (``Cause``, ``Problem``, ``Note``),
worded later by ``grader.report.messages``. The forbidden-call verdict found here does not
depend on the worker: it holds even when the submission never runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from grader.plan.policy import forbidden_uses
from grader.plan.slicing import ParsedSource, Slice, slice_for
from grader.report.outcomes import Cause, Note, Problem
from grader.spec.cases import Assignment, Case

#: How a cell that cannot be read explains a graded class defined in it.
_CAUSE_OF = {"blank": "not_implemented", "syntax_error": "syntax_error", "too_deep": "too_deep"}


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
    explaining = {id(e) for e in (parsed.defining_error(name) for name in missing) if e is not None}
    runnable = tuple(c for c in assignment.cases if c.id in available and not c.placeholder)
    to_run = tuple(c for c in runnable if c.target not in missing)
    forbidden = {t.name: tuple(_forbidden_problems(parsed, t.name, t.forbid))
                 for t in assignment.targets.values() if t.forbid and t.name not in missing}
    notes = [Note("missing_target", {"kind": c.kind, "data": c.data}) for c in missing.values()]
    notes += [Note("broken_redefinition", {"target": name, "graded": sliced.definitions[name].unit.label,
                                           "error": error.facts()}) for name, error in sliced.redefinitions.items()]
    notes += [Note("unit_error", e.facts()) for e in parsed.syntax_errors if id(e) not in explaining]
    return Plan(assignment, parsed, sliced, runnable, to_run, missing, forbidden, tuple(notes))


def missing_cause(parsed: ParsedSource, name: str) -> Cause:
    """Why the graded class ``name`` cannot run: a blank, a cell that cannot be read, or not defined."""
    error = parsed.defining_error(name)
    if error is None:
        return Cause("missing_target", {"target": name})
    facts = error.facts()
    return Cause(_CAUSE_OF[facts["kind"]], {"target": name, **facts})


def _forbidden_problems(parsed: ParsedSource, target: str, forbid: tuple[str, ...]) -> list[Problem]:
    statements = slice_for(parsed, [target]).statements
    return [Problem("forbidden_static", found) for found in forbidden_uses(statements, forbid)]
