"""The words of a cause's entry in a report: its title, where, the fix, its cost, its evidence, and the
small phrases that frame it ("Cause 2: …", "Costs 8 points in 4 cases.").

An entry stands for every case one cause explains (``grader.judge.causes`` groups them); what it
says is worded here, once for all its cases, from the same typed facts (``Cause``, ``Problem``
kinds) the per-case lines of ``grader.model.messages`` are worded from.
"""
from __future__ import annotations

from typing import Any

from grader.model.messages import (cause_details, cause_reason, error_lead, function_names, location, mistake_lead,
                                    points, problem_text, rename_to, stop_phrase)
from grader.model.outcomes import (Cause, CellSyntaxError, CellTooDeep, Forbidden, ForbiddenRuntime, ForbiddenStatic,
                                    MaskedLeak, MissingTarget, NonFinite, NotImplementedYet, PerturbedChanged, Problem,
                                    Raised, RowSum, Scale, ShapeDiffers, Stopped, UnitCause, ValueDiffers, WrongAnswer)


#: A wrong answer shown by problems of different outputs, by what they show (``EVIDENCE`` names).
_CATEGORY_TITLES = {
    "values": "{target} computes values that differ from the reference's",
    "gradient": "{target}'s parameter gradients differ from the reference's",
    "shape": "{target}'s outputs are missing or have the wrong shape",
    "mask": "masked positions still count in {target}",
    "softmax": "{target}'s attention rows do not sum to 1 over the keys",
    "parameters": "{target}'s parameters differ from the reference's",
    "unused": "some of {target}'s parameters take no part in the output",
}


def summary_title(cause: Cause, case: Any, problems: tuple[Problem, ...], mistakes: list[tuple[str, str, float]],
                  grouped: bool, category: str = "") -> str:
    """The one line that leads a cause's entry: what went wrong, said once for all its cases.

    ``mistakes`` are (name, hint, credit) of the recognised mistakes that explain it; ``grouped``
    says the entry stands for several cases, so nothing case-specific goes in the line;
    ``category`` (a wrong answer whose cases differ in different outputs) says what they show.
    """
    if mistakes:
        credit = min(c for _, _, c in mistakes)
        return mistake_lead([name for name, _, _ in mistakes]) + (f" (partial credit: {credit:.0%} of each case it explains)" if credit else "")
    if isinstance(cause, Raised):
        message = " ".join(cause.error.message.split())
        if cause.error.api_misuse:
            return message
        lead = error_lead(cause.error, cause.phase, case.target)
        return f"{lead}: {message}" if message else lead
    if isinstance(cause, WrongAnswer) and category in _CATEGORY_TITLES:
        return _CATEGORY_TITLES[category].format(target=case.target)
    if isinstance(cause, WrongAnswer) and problems and grouped:
        return problem_headline(problems[0])
    if isinstance(cause, Forbidden) and problems:
        p = problems[0]
        if isinstance(p, ForbiddenStatic):
            return f"{case.target} uses {p.used}, which this exercise forbids"
        if isinstance(p, ForbiddenRuntime) and not p.hidden:
            return f"{case.target} uses {p.called}, which this exercise forbids"
        return f"{case.target} calls an API this exercise forbids"
    if isinstance(cause, NotImplementedYet):
        return f"{cause.target} is not implemented yet"
    if isinstance(cause, CellSyntaxError):
        message = cause.unit.message
        return f"{cause.target}'s cell has a SyntaxError" + (f": {message}" if message else "")
    if isinstance(cause, CellTooDeep):
        return f"{cause.target}'s cell is nested too deeply to read"
    if isinstance(cause, MissingTarget):
        return f"{cause.target} is not defined"
    if isinstance(cause, Stopped) and cause.scope != "top-level":
        return f"your code {stop_phrase(cause.stop)}" + ("" if grouped else " in this case")
    return cause_reason(cause, case, problems)


def summary_where(cause: Cause, problems: tuple[Problem, ...] = ()) -> str:
    """Where the cause is in the submission ('cell 7, line 21 (forward): `y = x @ w`'), or ''."""
    if isinstance(cause, UnitCause):
        return location(cause.unit.label, cause.unit.line, code=cause.unit.code)
    if isinstance(cause, Forbidden) and problems:
        p = problems[0]
        if isinstance(p, ForbiddenStatic):
            return location(p.label, p.line, code=p.code)
        if isinstance(p, ForbiddenRuntime) and p.case:
            return f"called while case {p.case!r} ran"
        return "called while a hidden case ran"
    if isinstance(cause, MissingTarget) and cause.suggestion:
        sug = cause.suggestion
        return location(sug.label, sug.line, code=f"class {sug.name}")
    if not isinstance(cause, Raised) or not cause.error.label:
        return ""
    err = cause.error
    return location(err.label, err.line, err.function, err.code)


def summary_fix(cause: Cause, hint: str, mistakes: list[tuple[str, str, float]]) -> str:
    """What to do about it: the mistake's hint, how to fill in a missing class, or the case's hint."""
    if mistakes:
        if len(mistakes) == 1:
            return mistakes[0][1]
        return "\n".join(f"{name}: {h}" for name, h, _ in mistakes if h)
    if isinstance(cause, Forbidden):
        return hint or "Write the computation yourself."
    if isinstance(cause, NotImplementedYet):
        inside = (f" (this blank is in {function_names(cause.needed)}, which {cause.target} needs)"
                  if cause.needed else "")
        return f"Replace `# FILL IN HERE` with your code{inside}; this is the first blank the grader found."
    if isinstance(cause, CellSyntaxError):
        return "Fix this line so the cell runs; the rest of the cell cannot be read until it does."
    if isinstance(cause, CellTooDeep):
        return (f"Split the expression into smaller statements (compute parts into variables first); the grader "
                f"reads at most {cause.unit.limit} levels of nesting.")
    if isinstance(cause, MissingTarget):
        if cause.suggestion:
            return f"Did you mean `{cause.suggestion.name}`? {rename_to(cause.target)}"
        return f"Define `class {cause.target}(nn.Module)` at the top level of a cell, with exactly this name."
    return hint


def summary_costs(points_lost: float, n_cases: int) -> str:
    """'Costs 8 points in 4 cases.'"""
    cases = f"{n_cases} case{'' if n_cases == 1 else 's'}"
    return f"Costs {points(points_lost)} point{'' if points_lost == 1 else 's'} in {cases}."


def seen_in(case_name: str) -> str:
    """The line above a cause's evidence."""
    return f"In “{case_name}”:"


def problem_headline(p: Problem) -> str:
    """A problem said without one case's numbers (the entry of several cases leads with it)."""
    if isinstance(p, ValueDiffers):
        return f"{_label(p)} differs from the reference"
    if isinstance(p, Scale):
        return f"{_label(p)} is scaled wrongly"
    if isinstance(p, ShapeDiffers):
        return f"{_label(p)} has the wrong shape"
    if isinstance(p, NonFinite):
        return f"`{p.name}` holds NaN or inf"
    if isinstance(p, MaskedLeak):
        return f"masked positions get attention in `{p.name}`"
    if isinstance(p, RowSum):
        return f"rows of `{p.name}` do not sum to 1 over the keys"
    if isinstance(p, PerturbedChanged):
        return f"`{p.name}` changes when only a masked key/value changes"
    return problem_text(p).split("\n")[0]


def _label(p: ValueDiffers | Scale | ShapeDiffers) -> str:
    return f"the gradient of {p.name}" if p.grad else f"`{p.name}`"


def summary_evidence(cause: Cause, case: Any, problems: tuple[Problem, ...], headline_given: bool) -> str:
    """What a cause's first case showed, below its title (a traceback, the values that differ).

    ``headline_given``: the title did not quote the first problem (a group's headline, or a
    mistake's name), so it is shown here in full.
    """
    if isinstance(cause, Raised):
        return cause.error.traceback
    if isinstance(cause, Forbidden):  # the title, where and fix say it; more than one use is listed
        return "\n".join(problem_text(p, case) for p in problems[1:])
    if not isinstance(cause, WrongAnswer):
        return ""
    texts = [problem_text(p, case) for p in problems]
    if headline_given:
        return "\n".join(texts)
    return cause_details(cause, case, problems)


def cause_pointer(number: int, title: str) -> str:
    """How a case's own output names its cause."""
    return f"Cause {number}: {title}"


def causes_heading(n: int) -> str:
    """The heading above the causes."""
    return "What to fix" if n == 1 else f"What to fix ({n} causes)"


def more_lines(n: int) -> str:
    """The line that ends a shortened text in the terminal."""
    return f"… {n} more line{'' if n == 1 else 's'} (--format html or json shows them all)"
