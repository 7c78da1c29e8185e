"""The judge stage (pure): the plan, the reference's observations and the student's → case results.

Capture, then classify: every case becomes ``passed``, ``failed`` (the code ran and gave a
wrong answer), ``error`` (it could not run: not defined, a blank, an exception, a crash or
a timeout) or ``pending`` (a hidden case in a student's local check). The facts of each
verdict are kept as data (``Cause``, ``Problem``); ``grader.model.messages`` words them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from grader.execute.observation import Observation
from grader.execute.session import Execution
from grader.judge.checks import CHECKS, DECIDED_ELSEWHERE, first_largest
from grader.judge.diagnose import Variants, diagnose
from grader.judge.hints import hint_applies
from grader.plan.plan import Plan
from grader.model import messages
from grader.model.outcomes import Cause, Problem
from grader.model.result import FIGURE_DECIMALS, CaseResult
from grader.spec.cases import Assignment, Case, Target
from grader.spec.mistakes import Mistake


def judge(plan: Plan, expected: dict[str, Observation], execution: Execution) -> tuple[CaseResult, ...]:
    """One result per case of the assignment, in the case file's order."""
    assignment = plan.assignment
    runnable = {c.id for c in plan.runnable}
    results = []
    for case in assignment.cases:
        if case.id not in runnable:
            results.append(_result(case, "pending", Cause("pending")))
        elif "policy" in case.checks:
            results.append(policy_result(case, plan, execution))
        else:
            target = assignment.targets[case.target]
            unavailable = plan.missing.get(case.target) or execution.lost.get(case.id) or Cause("not_run", {"why": "time"})
            result = evaluate_case(case, target, expected[case.id], execution.observations.get(case.id), unavailable,
                                   assignment.custom_checks, assignment.trusted)
            figure = attention_figure(case, target, expected[case.id], execution.observations.get(case.id))
            # the reference's map alone (the code did not run, or raised) would bury what went wrong: shown
            # only beside the student's own
            shown = figure is not None and figure.get("got") is not None
            results.append(dataclasses.replace(result, figures=(figure,)) if shown else result)
    return tuple(results)


def not_run(assignment: Assignment, cause: Cause) -> tuple[CaseResult, ...]:
    """Every case of ``assignment`` unrun for ``cause``: a submission whose grading never finished."""
    return tuple(_result(case, "error", cause) for case in assignment.cases)


def evaluate_case(case: Case, target: Target, ref: Observation, stu: Observation | None, unavailable: Cause,
                  custom: dict[str, Callable[..., list[str]]] | None = None, trusted: bool = True) -> CaseResult:
    """Classify one case. ``unavailable`` says why there is no observation (class not found, worker died);
    ``custom`` are the assignment's own check functions."""
    if stu is None:
        return _result(case, "error", unavailable)
    if stu.status == "error" and stu.error is not None:
        err = stu.error
        if case.raises and stu.phase == "build":
            if case.raises in err.bases:
                return _result(case, "passed", None, ran=stu)
            return _result(case, "failed", Cause("wrong_answer"),
                           (Problem("raised_other", {"type": err.type, "message": err.message}),), ran=stu)
        return _result(case, "error", Cause("exception", {"error": dataclasses.asdict(err), "phase": stu.phase}),
                       ran=stu)
    if case.raises:
        return _result(case, "failed", Cause("wrong_answer"), (Problem("did_not_raise"),), ran=stu)
    problems: list[Problem] = []
    for check in case.checks:
        if check in DECIDED_ELSEWHERE:
            continue
        if check in CHECKS:
            problems += CHECKS[check](case, target, ref, stu)
        elif custom and check in custom:
            problems += _custom(custom[check], check, case, target, ref, stu)
        elif not trusted:  # a course's own check, never imported from a bundle we do not trust
            return _result(case, "pending", Cause("unavailable"))
    if not problems:
        return _result(case, "passed", None, ran=stu)
    return _result(case, "failed", Cause("wrong_answer"), tuple(problems), ran=stu)


def policy_result(case: Case, plan: Plan, execution: Execution) -> CaseResult:
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
        return _result(case, "failed", Cause("forbidden"), static, hint=True)
    ran = [c for c in plan.to_run if c.target == target]
    told = [c for c in ran if case.hidden or not c.hidden] or ran  # whose facts this verdict may show
    observed = [o for c in told if (o := execution.observations.get(c.id))]
    problems = _forbidden_uses(observed)
    if not problems and any(o.forbidden for c in ran if (o := execution.observations.get(c.id)) is not None):
        problems = (Problem("forbidden_runtime", {"hidden": True}),)  # seen only while hidden cases ran
    if problems:
        return _result(case, "failed", Cause("forbidden"), problems, hint=True)
    needs_run = [c for c in ran if "policy" not in c.checks]
    if needs_run and not any(o.status == "ok" for o in observed):
        return _result(case, "error", Cause("unverified", {"target": target}))
    return _result(case, "passed", None)


def _forbidden_uses(observed: list[Observation]) -> tuple[Problem, ...]:
    """Each forbidden use once, with the first case that made it."""
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for o in observed:
        for u in o.forbidden:
            seen.setdefault((u.forbidden, u.called), (o.case_id, u))
    return tuple(Problem("forbidden_runtime", {"forbidden": u.forbidden, "called": u.called, "case": cid})
                 for cid, u in seen.values())


def name_mistakes(results: tuple[CaseResult, ...], plan: Plan, expected: dict[str, Observation],
                  execution: Execution, variants: Variants, mistakes: list[Mistake]) -> tuple[CaseResult, ...]:
    """Lead every failing case whose outputs match known mistake(s) with their names and hints.

    A recognised mistake outranks the case's own hint (it is dropped), and earns the share of
    the case's points its ``credit`` gives (the smallest, when several could explain it).
    """
    cases = {c.id: c for c in plan.assignment.cases}
    out = []
    for result in results:
        stu = execution.observations.get(result.case_id)
        if result.status in ("failed", "error") and stu is not None and result.case_id in expected:
            case = cases[result.case_id]
            found = diagnose(case, expected[result.case_id], stu, variants, mistakes,
                             plan.assignment.targets.get(case.target))
            if found:
                cause = result.cause or Cause("wrong_answer")
                plain = messages.cause_details(cause, case, result.problems)
                credit = min(m.credit for m in found)
                score = round(case.points * credit, 6)
                lines = [result.reason, plain]
                if score:
                    lines.insert(0, messages.partial_credit(score, case.points))
                result = dataclasses.replace(result, reason=messages.known_mistake([(m.name, m.hint) for m in found]),
                                             details="\n".join(x for x in lines if x), score=score, hint="",
                                             mistakes=tuple(m.id for m in found))
        out.append(result)
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
    return [Problem("custom", {"text": str(p)}) for p in found]


def _result(case: Case, status: str, cause: Cause | None, problems: tuple[Problem, ...] = (),
            ran: Observation | None = None, hint: bool | None = None) -> CaseResult:
    """A case's result, worded; ``ran`` is the student's observation when the code ran. The hint is
    shown where the code ran (or was read, ``hint=True``), fell short, and showed what the hint is about."""
    reason = details = hint_text = ""
    if cause is not None:
        show = ((ran is not None if hint is None else hint) and status != "passed"
                and hint_applies(case.hint_on, cause, problems))
        reason = messages.cause_reason(cause, case, problems)
        details = messages.cause_details(cause, case, problems)
        hint_text = case.hint if show else ""
    score = case.points if status == "passed" else 0.0
    return CaseResult(case_id=case.id, name=case.name, target=case.target, status=status, score=score,
                      max_score=case.points, reason=reason, details=details, visibility=case.visibility,
                      duration=ran.duration if ran is not None else 0.0, cause=cause, problems=problems,
                      hint=hint_text)
