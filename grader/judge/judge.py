"""The judge stage (pure): the plan, the reference's observations and the student's → verdicts.

Capture, then classify: every case becomes ``passed``, ``failed`` (the code ran and gave a
wrong answer), ``error`` (it could not run: not defined, a blank, an exception, a crash or
a timeout) or ``pending`` (a hidden case in a student's local check). A ``Verdict`` holds
facts only (``Cause``, ``Problem``, the known mistakes its outputs match); nothing here is
worded: ``grader.judge.compose`` words every verdict once, into the report.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from grader.execute.observation import Observation
from grader.execute.execution import Execution
from grader.judge.checks import CHECKS, DECIDED_ELSEWHERE, first_largest
from grader.judge.diagnose import Variants, diagnose
from grader.judge.hints import hint_applies
from grader.plan.plan import Plan
from grader.model import messages
from grader.model.outcomes import (Cause, Custom, DidNotRaise, Forbidden, ForbiddenRuntime, NotRun, Pending, Problem,
                                   Raised, RaisedOther, Unavailable, Unverified, WrongAnswer)
from grader.model.result import FIGURE_DECIMALS, Status
from grader.spec.cases import Assignment, Case, Target
from grader.spec.mistakes import Mistake


@dataclass(frozen=True)
class Verdict:
    """One case's outcome, as facts: its status, why it did not pass, what it showed.

    ``hint_on`` says the case's hint is about this failure (the code ran, or was read, fell
    short, and showed what the hint is about); ``mistakes`` are the known mistakes its outputs
    match (``name_mistakes``), which earn the share of the points the smallest ``credit`` gives.
    """

    case: Case
    status: Status
    cause: Cause | None = None
    problems: tuple[Problem, ...] = ()
    duration: float = 0.0
    figures: tuple[dict[str, Any], ...] = ()
    hint_on: bool = False
    mistakes: tuple[Mistake, ...] = ()

    @property
    def score(self) -> float:
        if self.status == "passed":
            return self.case.points
        return round(self.case.points * min(m.credit for m in self.mistakes), 6) if self.mistakes else 0.0


def judge(plan: Plan, expected: dict[str, Observation], execution: Execution) -> tuple[Verdict, ...]:
    """One result per case of the assignment, in the case file's order."""
    assignment = plan.assignment
    runnable = {c.id for c in plan.runnable}
    results = []
    for case in assignment.cases:
        if case.id not in runnable:
            results.append(_result(case, "pending", Pending()))
        elif "policy" in case.checks:
            results.append(policy_result(case, plan, execution))
        else:
            target = assignment.targets[case.target]
            unavailable = plan.missing.get(case.target) or execution.lost.get(case.id) or NotRun("time")
            result = evaluate_case(case, target, expected[case.id], execution.observations.get(case.id), unavailable,
                                   assignment.custom_checks, assignment.trusted)
            figure = attention_figure(case, target, expected[case.id], execution.observations.get(case.id))
            # the reference's map alone (the code did not run, or raised) would bury what went wrong: shown
            # only beside the student's own
            shown = figure is not None and figure.get("got") is not None
            results.append(dataclasses.replace(result, figures=(figure,)) if shown else result)
    return tuple(results)


def not_run(assignment: Assignment, cause: Cause) -> tuple[Verdict, ...]:
    """Every case of ``assignment`` unrun for ``cause``: a submission whose grading never finished."""
    return tuple(_result(case, "error", cause) for case in assignment.cases)


def evaluate_case(case: Case, target: Target, ref: Observation, stu: Observation | None, unavailable: Cause,
                  custom: dict[str, Callable[..., list[str]]] | None = None, trusted: bool = True) -> Verdict:
    """Classify one case. ``unavailable`` says why there is no observation (class not found, worker died);
    ``custom`` are the assignment's own check functions."""
    if stu is None:
        return _result(case, "error", unavailable)
    if stu.status == "error" and stu.error is not None:
        err = stu.error
        if case.raises and stu.phase == "build":
            if case.raises in err.bases:
                return _result(case, "passed", None, ran=stu)
            return _result(case, "failed", WrongAnswer(), (RaisedOther(err.type, err.message),), ran=stu)
        return _result(case, "error", Raised(err, stu.phase), ran=stu)
    if case.raises:
        return _result(case, "failed", WrongAnswer(), (DidNotRaise(),), ran=stu)
    problems: list[Problem] = []
    for check in case.checks:
        if check in DECIDED_ELSEWHERE:
            continue
        if check in CHECKS:
            problems += CHECKS[check](case, target, ref, stu)
        elif custom and check in custom:
            problems += _custom(custom[check], check, case, target, ref, stu)
        elif not trusted:  # a course's own check, never imported from a bundle we do not trust
            return _result(case, "pending", Unavailable())
    if not problems:
        return _result(case, "passed", None, ran=stu)
    return _result(case, "failed", WrongAnswer(), tuple(problems), ran=stu)


def policy_result(case: Case, plan: Plan, execution: Execution) -> Verdict:
    """The forbidden-call verdict: found in the source (whatever the worker did), or seen at run time.

    Passing needs evidence: the source uses no forbidden API, and at least one of the
    target's cases ran to completion under the run-time guard without calling one.

    A public verdict says what the public cases' runs showed. A use seen only while hidden cases
    ran still fails it, told without its facts: what a hidden case's worker reports is the code's
    own word, written with the hidden inputs at hand (which API, which case), and a public case's
    words reach students. Its evidence of a completed run is then a public case's as well.
    """
    target = case.target
    if target in plan.missing:
        return _result(case, "error", plan.missing[target])
    static = plan.forbidden.get(target, ())
    if static:
        return _result(case, "failed", Forbidden(), static, hint=True)
    ran = [c for c in plan.to_run if c.target == target]
    told = [c for c in ran if case.hidden or not c.hidden] or ran  # whose facts this verdict may show
    observed = [o for c in told if (o := execution.observations.get(c.id))]
    problems = _forbidden_uses(observed)
    if not problems and any(o.forbidden for c in ran if (o := execution.observations.get(c.id)) is not None):
        problems = (ForbiddenRuntime(hidden=True),)  # seen only while hidden cases ran
    if problems:
        return _result(case, "failed", Forbidden(), problems, hint=True)
    needs_run = [c for c in ran if "policy" not in c.checks]
    if needs_run and not any(o.status == "ok" for o in observed):
        return _result(case, "error", Unverified(target))
    return _result(case, "passed", None)


def _forbidden_uses(observed: list[Observation]) -> tuple[Problem, ...]:
    """Each forbidden use once, with the first case that made it."""
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for o in observed:
        for u in o.forbidden:
            seen.setdefault((u.forbidden, u.called), (o.case_id, u))
    return tuple(ForbiddenRuntime(u.forbidden, u.called, cid) for cid, u in seen.values())


def name_mistakes(verdicts: tuple[Verdict, ...], plan: Plan, expected: dict[str, Observation],
                  execution: Execution, variants: Variants, mistakes: list[Mistake]) -> tuple[Verdict, ...]:
    """Every failing case whose outputs match known mistake(s), with them (``Verdict.mistakes``).

    A recognised mistake outranks the case's own hint, and earns the share of the case's points
    its ``credit`` gives (the smallest, when several could explain it).
    """
    out = []
    for v in verdicts:
        stu = execution.observations.get(v.case.id)
        if v.status in ("failed", "error") and stu is not None and v.case.id in expected:
            found = diagnose(v.case, expected[v.case.id], stu, variants, mistakes,
                             plan.assignment.targets.get(v.case.target))
            if found:
                v = dataclasses.replace(v, mistakes=tuple(found))
        out.append(v)
    return tuple(out)


def attention_figure(case: Case, target: Target, ref: Observation, stu: Observation | None) -> dict[str, Any] | None:
    """The first query-by-key attention map (batch 0, head 0), expected and got, with the mask."""
    if not target.attention:
        return None
    exp = ref.tensors.get("out/" + target.attention)
    got = stu.tensors.get("out/" + target.attention) if stu is not None else None
    if exp is None or exp.ndim < 2:
        return None
    if got is not None and got.shape != exp.shape:
        got = None
    lead = (0,) * (exp.ndim - 2)
    mask = np.broadcast_to(ref.tensors["in/mask"], exp.shape) if "in/mask" in ref.tensors else None
    with np.errstate(all="ignore"):
        if got is not None and not np.allclose(got, exp, rtol=case.rtol, atol=case.atol):
            diff = np.nan_to_num(np.abs(got.astype(np.float64) - exp), nan=np.inf)
            lead = tuple(int(i) for i in np.unravel_index(first_largest(diff), exp.shape)[:-2])  # where it's worst
        elif mask is not None and (mask == 0).any():
            lead = tuple(int(i) for i in np.argwhere(mask == 0)[0][:-2])  # where masking shows
        title = f"{target.attention}{messages.index_text(lead)} (batch, head…): queries × keys"
        figure: dict[str, Any] = {"title": title,
                                  "expected": np.round(exp[lead].astype(np.float64), FIGURE_DECIMALS).tolist(),
                                  "got": None, "mask": None}
        if got is not None:
            shown = np.nan_to_num(got[lead].astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
            figure["got"] = np.round(shown, FIGURE_DECIMALS).tolist()
    if mask is not None:
        figure["mask"] = mask[lead].astype(int).tolist()
    return figure


def _custom(function: Callable[..., list[str]], name: str, case: Case, target: Target, ref: Observation,
            stu: Observation) -> list[Problem]:
    """An instructor's check (documented signature: tensors and record dicts, returns sentences)."""
    found = function(case, target, ref.tensors, ref.record(), stu.tensors, stu.record())
    if not isinstance(found, (list, tuple)):
        raise TypeError(f"the course's check {name!r} returned {type(found).__name__}, not a list of problems")
    return [Custom(str(p)) for p in found]


def _result(case: Case, status: Status, cause: Cause | None, problems: tuple[Problem, ...] = (),
            ran: Observation | None = None, hint: bool | None = None) -> Verdict:
    """A case's verdict; ``ran`` is the student's observation when the code ran. The hint is about
    it where the code ran (or was read, ``hint=True``), fell short, and showed what the hint is about."""
    hint_on = (cause is not None and (ran is not None if hint is None else hint) and status != "passed"
               and hint_applies(case.hint_on, cause, problems))
    return Verdict(case, status, cause, problems, duration=ran.duration if ran is not None else 0.0,
                   hint_on=hint_on)
