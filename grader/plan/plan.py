"""The plan stage (pure): from a parsed submission and an assignment, what to run and what is known already.

Nothing here starts a process or words a sentence for a student: missing classes, syntax
errors and forbidden calls found in the source are facts (``Cause``, ``Problem``, ``Note``),
worded later by ``grader.model.messages``. The forbidden-call verdict found here does not
depend on the worker: it holds even when the submission never runs.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from grader.plan.policy import forbidden_uses
from grader.plan.slicing import ParsedSource, Slice, Statement, slice_for
from grader.model.outcomes import (BrokenRedefinition, CellSyntaxError, CellTooDeep, Cause, ForbiddenStatic, MissingClass,
                                   MissingTarget, Note, NotImplementedYet, Problem, Suggestion, UnitCause,
                                   UnreadableUnit)
from grader.spec.cases import Assignment, Case, Target

#: How a cell that cannot be read explains a graded class defined in it (by ``UnitError.what``).
_CAUSE_OF: dict[str, type[UnitCause]] = {"blank": NotImplementedYet, "syntax_error": CellSyntaxError,
                                         "too_deep": CellTooDeep}


@dataclass(frozen=True)
class Plan:
    """What to run for one submission, and what is known before running it."""

    assignment: Assignment
    parsed: ParsedSource
    #: the statements the graded classes that can run need (all of them together; not those of a
    #: class that still holds a blank of the template)
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
    def runs(self) -> tuple[tuple[Case, ...], ...]:
        """``to_run`` as separate workers run it: the public cases first, then the hidden ones in a
        worker of their own, so that no public case ever runs in a process that was given a hidden
        case's inputs (what a student sees of the public cases cannot carry them). One group when the
        cases are all of one kind; one empty group (the top-level statements alone) when none can run."""
        public = tuple(c for c in self.to_run if not c.hidden)
        hidden = tuple(c for c in self.to_run if c.hidden)
        return tuple(g for g in (public, hidden) if g) or ((),)

    @property
    def local(self) -> bool:
        """True when only some cases can run here: a student's local check against released fixtures."""
        return len(self.runnable) < len(self.assignment.cases)


def make_plan(parsed: ParsedSource, assignment: Assignment, available: set[str]) -> Plan:
    """Plan grading ``parsed`` against ``assignment``; ``available``: ids of cases with expected outputs."""
    every = slice_for(parsed, assignment.classes)
    missing: dict[str, Cause] = {}
    for name in assignment.classes:
        cause = (missing_cause(parsed, name, assignment.targets) if name in every.missing
                 else blank_cause(parsed, name))
        if cause is not None:
            missing[name] = cause
    blanks = [name for name in missing if name not in every.missing]
    # A class that still holds a blank never runs, nor do the statements only it needs.
    sliced = slice_for(parsed, [n for n in assignment.classes if n not in blanks]) if blanks else every
    explaining = {id(e) for e in (parsed.defining_error(name) for name in every.missing) if e is not None}
    runnable = tuple(c for c in assignment.cases if c.id in available and not c.placeholder)
    to_run = tuple(c for c in runnable if c.target not in missing)
    forbidden = {t.name: tuple(_forbidden_problems(parsed, t.name, t.forbid))
                 for t in assignment.targets.values() if t.forbid and t.name not in missing}
    notes: list[Note] = [MissingClass(c) for c in missing.values()]
    notes += [BrokenRedefinition(name, every.definitions[name].unit.label, error.fact())
              for name, error in every.redefinitions.items()]
    notes += [UnreadableUnit(e.fact()) for e in parsed.syntax_errors if id(e) not in explaining]
    return Plan(assignment, parsed, sliced, runnable, to_run, missing, forbidden, tuple(notes))


def missing_cause(parsed: ParsedSource, name: str, targets: Mapping[str, Target] | None = None) -> Cause:
    """Why the graded class ``name``, which no statement defines, cannot run: a blank, a cell that
    cannot be read, or not defined (then, given the assignment's ``targets``, a class it may be
    under another name)."""
    error = parsed.defining_error(name)
    if error is None:
        similar = similar_class(parsed, targets[name], set(targets)) if targets is not None and name in targets else None
        if similar is None:
            return MissingTarget(name)
        return MissingTarget(name, Suggestion(next(iter(similar.defines)), similar.unit.label, similar.lineno))
    unit = error.fact()
    return _CAUSE_OF[unit.what](name, unit)


def blank_cause(parsed: ParsedSource, name: str) -> Cause | None:
    """``not_implemented`` when the graded class ``name``, or a statement it needs (a helper, a
    constant), still holds an unfilled blank of the template (``grader.plan.slicing.find_blanks``);
    None otherwise. The class's own blank is told first, else the first of what it needs."""
    needed = slice_for(parsed, [name])
    own = needed.definitions.get(name)
    if own is None:
        return None
    holder = own if own.blank is not None else next((s for s in needed.statements if s.blank is not None), None)
    if holder is None:
        return None
    return NotImplementedYet(name, holder.blank_fact(), () if holder is own else tuple(sorted(holder.defines)[:3]))


#: How close a class's name must be to a graded class's to be suggested (``difflib`` ratio).
SIMILAR_NAME = 0.8
_NAME_COMPARED = 100


def similar_class(parsed: ParsedSource, target: Target, graded: set[str]) -> Statement | None:
    """A top-level class, not itself graded, that may be ``target`` under another name.

    Its name is equal ignoring case and underscores, or close (``SIMILAR_NAME``); failing that,
    it is the only such class whose ``forward`` takes the target's arguments first (names
    compared ignoring case). The last definition of a name counts; names are compared on their
    first 100 characters, so the cost stays linear in the number of classes.
    """
    want = target.name[:_NAME_COMPARED]
    folded = want.replace("_", "").lower()
    args = [a.lower() for a in target.args]
    last: dict[str, Statement] = {}
    for s in parsed.statements:
        if s.is_class:
            for n in s.defines:
                if n not in graded:
                    last[n] = s
    best, best_ratio, by_signature = None, 0.0, []
    for n, s in last.items():
        name = n[:_NAME_COMPARED]
        matcher = difflib.SequenceMatcher(None, want, name)
        ratio = 1.0 if name.replace("_", "").lower() == folded else (
            matcher.ratio() if matcher.real_quick_ratio() >= SIMILAR_NAME and matcher.quick_ratio() >= SIMILAR_NAME
            else 0.0)
        if ratio >= SIMILAR_NAME and ratio > best_ratio:
            best, best_ratio = s, ratio
        forward = s.forward_args
        if forward is not None and args and [a.lower() for a in forward[:len(args)]] == args:
            by_signature.append(s)
    if best is not None:
        return best
    return by_signature[0] if len(by_signature) == 1 else None


def _forbidden_problems(parsed: ParsedSource, target: str, forbid: tuple[str, ...]) -> list[ForbiddenStatic]:
    statements = slice_for(parsed, [target]).statements
    return forbidden_uses(statements, forbid)
