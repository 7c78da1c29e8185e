"""One cause, said once: the cases that lost points for the same reason, grouped (pure).

When one error breaks eight cases, the student needs that error once, where it is, how to
fix it and what it costs, not eight identical rows. Cases are grouped by their facts, never
by their wording:

- a recognised mistake (the same mistake ids);
- a class that cannot run (not implemented, a SyntaxError, not defined): by the class;
- an exception: by its type and the line that raised it, in the same phase;
- a stop (timeout, crash, ...): by its kind;
- a wrong answer: by what its first problem shows (wrong values, a wrong shape, masking, ...)
  within one class; a class's wrong gradients join its wrong values when both are seen (a
  wrong forward gives wrong gradients too).

Causes are numbered in the order of the first case they explain, so the numbers in the
table's rows run down the page; each case's ``cause_ref`` points to its entry.

A student's report shows a cause's public cases only (``grader.report.audience``), so what
it shows of them never depends on a hidden case: which public cases share a cause is decided
by the public cases alone, and an entry's words (title, where, fix, evidence) come from its
public cases when it has any. Hidden cases join an entry for instructors only.
"""
from __future__ import annotations

import dataclasses
from typing import Hashable

from grader.model import summaries
from grader.model.outcomes import (CLASS_CAUSES, NotRun, Pending, Problem, Raised, Stopped, Unavailable, Unverified,
                                    WrongAnswer)
from grader.model.result import CaseResult, CauseSummary
from grader.spec.cases import Case
from grader.spec.mistakes import Mistake
from grader.judge.hints import evidence

#: Cases with these causes lose nothing (yet): no entry.
_NOT_LOST = (Pending, Unavailable)


def group_causes(results: tuple[CaseResult, ...], cases: dict[str, Case],
                 mistakes: dict[str, Mistake]) -> tuple[tuple[CaseResult, ...], tuple[CauseSummary, ...]]:
    """The results with ``cause_ref`` set, and one ``CauseSummary`` per distinct cause."""
    hidden = {r.case_id for r in results if r.visibility == "hidden"}
    keys = _merged({r.case_id: cause_key(r) for r in results}, hidden)
    groups: dict[Hashable, list[CaseResult]] = {}
    for r in results:
        if keys[r.case_id] is not None:
            groups.setdefault(keys[r.case_id], []).append(r)
    numbers = {key: i for i, key in enumerate(groups, start=1)}
    summaries = tuple(_summary(numbers[key], members, cases, mistakes) for key, members in groups.items())
    out = tuple(dataclasses.replace(r, cause_ref=numbers[key]) if (key := keys[r.case_id]) is not None else r
                for r in results)
    return out, summaries


def _merged(keys: dict[str, Hashable | None], hidden: set[str]) -> dict[str, Hashable | None]:
    """A class's wrong gradients are the same cause as its wrong values, when both are seen; a public
    case's wrong gradients join only wrong values that public cases show."""
    def with_values(cases: set[str]) -> set[Hashable]:
        return {k[1] for cid, k in keys.items() if cid in cases and isinstance(k, tuple) and k[0] == "wrong_answer"
                and k[2] == "values"}

    public, every = with_values(set(keys) - hidden), with_values(set(keys))
    return {cid: ("wrong_answer", k[1], "values") if (isinstance(k, tuple) and k[0] == "wrong_answer"
                                                      and k[2] == "gradient"
                                                      and k[1] in (every if cid in hidden else public)) else k
            for cid, k in keys.items()}


def cause_key(r: CaseResult) -> Hashable | None:
    """What makes two cases' causes the same (None: the case lost nothing)."""
    c = r.cause
    if r.status in ("passed", "pending") or c is None or isinstance(c, _NOT_LOST):
        return None
    if r.mistakes:
        return ("mistake", tuple(sorted(r.mistakes)))
    if isinstance(c, (*CLASS_CAUSES, Unverified)):
        return (c.kind, c.target)
    if isinstance(c, Raised):
        e = c.error
        return (c.kind, e.type, e.label, e.line, e.code, c.phase)
    if isinstance(c, Stopped):
        return (c.kind, c.stop.kind, c.scope)
    if isinstance(c, NotRun):
        return (c.kind, c.why)
    if isinstance(c, WrongAnswer) and r.problems:
        return (c.kind, r.target, category(r.problems[0]))
    return (c.kind, r.case_id)


def category(p: Problem) -> str:
    """What a problem shows, as ``grader.spec.cases.EVIDENCE`` names it (``values``, ``shape``, ...)."""
    return next(iter(evidence(None, (p,))), p.kind)


def _summary(number: int, members: list[CaseResult], cases: dict[str, Case],
             mistakes: dict[str, Mistake]) -> CauseSummary:
    # What the entry says comes from its public cases where it has any: a student's report shows it
    # with them alone (``grader.report.audience`` keeps hidden cases' facts back).
    told = [r for r in members if r.visibility != "hidden"] or members
    first = told[0]
    case = cases[first.case_id]
    cause = first.cause or WrongAnswer()
    found = [(m.name, m.hint, m.credit) for mid in first.mistakes
             if (m := mistakes.get(mid)) is not None]
    grouped = len(told) > 1
    firsts = {r.first_problem for r in told if r.first_problem}
    title = summaries.summary_title(cause, case, first.problems, found, grouped,
                                   category(first.problems[0]) if len(firsts) > 1 and first.problems else "")
    shown = summaries.summary_evidence(cause, case, first.problems, grouped or bool(found))
    varied = len({r.first_problem for r in members if r.first_problem}) > 1 and not found
    return CauseSummary(
        number=number, kind="mistake" if found else cause.kind, title=title,
        cases=tuple(r.case_id for r in members),
        points_lost=round(sum(r.max_score - r.score for r in members), 6),
        where=summaries.summary_where(cause, first.problems), fix=summaries.summary_fix(cause, first.hint, found),
        evidence=shown, seen_in=first.name if shown and grouped else "", varied=varied,
        hidden_only=all(r.visibility == "hidden" for r in members))
