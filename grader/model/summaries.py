"""The words of a cause's entry in a report: its title, where, the fix, its cost, its evidence, and the
small phrases that frame it ("Cause 2: …", "Costs 8 points in 4 cases.").

An entry stands for every case one cause explains (``grader.judge.causes`` groups them); what it
says is worded here, once for all its cases, from the same facts (``Cause``, ``Problem``) the
per-case lines of ``grader.model.messages`` are worded from.
"""
from __future__ import annotations

from typing import Any

from grader.model.messages import (cause_details, cause_reason, error_lead, function_names, location, mistake_lead,
                                    points, problem_text, rename_to, stop_phrase)
from grader.model.outcomes import Cause, Problem, Stop


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
    if cause.kind == "exception":
        err = cause.data["error"]
        message = " ".join(str(err.get("message", "")).split())
        if err.get("api_misuse"):
            return message
        lead = error_lead(err, cause.data.get("phase"), case.target)
        return f"{lead}: {message}" if message else lead
    if cause.kind == "wrong_answer" and category in _CATEGORY_TITLES:
        return _CATEGORY_TITLES[category].format(target=case.target)
    if cause.kind == "wrong_answer" and problems and grouped:
        return problem_headline(problems[0])
    if cause.kind == "forbidden" and problems:
        d = problems[0].data
        if d.get("hidden"):
            return f"{case.target} calls an API this exercise forbids"
        return f"{case.target} uses {d.get('used') or d.get('called')}, which this exercise forbids"
    d = cause.data
    if cause.kind == "not_implemented":
        return f"{d['target']} is not implemented yet"
    if cause.kind == "syntax_error":
        return f"{d['target']}'s cell has a SyntaxError" + (f": {d['message']}" if d.get("message") else "")
    if cause.kind == "too_deep":
        return f"{d['target']}'s cell is nested too deeply to read"
    if cause.kind == "missing_target":
        return f"{d['target']} is not defined"
    if cause.kind == "stopped" and d.get("scope") != "top-level":
        return f"your code {stop_phrase(Stop(**d['stop']))}" + ("" if grouped else " in this case")
    return cause_reason(cause, case, problems)


def summary_where(cause: Cause, problems: tuple[Problem, ...] = ()) -> str:
    """Where the cause is in the submission ('cell 7, line 21 (forward): `y = x @ w`'), or ''."""
    if cause.kind in ("not_implemented", "syntax_error", "too_deep"):
        d = cause.data
        return location(d["label"], d["line"], code=d.get("code"))
    if cause.kind == "forbidden" and problems and problems[0].kind == "forbidden_static":
        d = problems[0].data
        return location(d["label"], d["line"], code=d["code"])
    if cause.kind == "forbidden" and problems:
        case_id = problems[0].data.get("case")
        return f"called while case {case_id!r} ran" if case_id else "called while a hidden case ran"
    if cause.kind == "missing_target" and cause.data.get("suggestion"):
        sug = cause.data["suggestion"]
        return location(sug["label"], sug["line"], code=f"class {sug['name']}")
    if cause.kind != "exception" or not cause.data["error"].get("label"):
        return ""
    err = cause.data["error"]
    return location(err["label"], err.get("line"), err.get("function"), err.get("code"))


def summary_fix(cause: Cause, hint: str, mistakes: list[tuple[str, str, float]]) -> str:
    """What to do about it: the mistake's hint, how to fill in a missing class, or the case's hint."""
    if mistakes:
        if len(mistakes) == 1:
            return mistakes[0][1]
        return "\n".join(f"{name}: {h}" for name, h, _ in mistakes if h)
    if cause.kind == "forbidden":
        return hint or "Write the computation yourself."
    d = cause.data
    if cause.kind == "not_implemented":
        inside = f" (this blank is in {function_names(d['needed'])}, which {d['target']} needs)" if d.get("needed") else ""
        return f"Replace `# FILL IN HERE` with your code{inside}; this is the first blank the grader found."
    if cause.kind == "syntax_error":
        return "Fix this line so the cell runs; the rest of the cell cannot be read until it does."
    if cause.kind == "too_deep":
        return (f"Split the expression into smaller statements (compute parts into variables first); the grader "
                f"reads at most {d.get('limit')} levels of nesting.")
    if cause.kind == "missing_target":
        target, sug = d["target"], d.get("suggestion")
        if sug:
            return f"Did you mean `{sug['name']}`? {rename_to(target)}"
        return f"Define `class {target}(nn.Module)` at the top level of a cell, with exactly this name."
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
    d = p.data
    name = d.get("name", "")
    label = f"the gradient of {name}" if d.get("grad") else f"`{name}`"
    k = p.kind
    if k == "value_differs":
        return f"{label} differs from the reference"
    if k == "scale":
        return f"{label} is scaled wrongly"
    if k == "shape_differs":
        return f"{label} has the wrong shape"
    if k == "non_finite":
        return f"`{name}` holds NaN or inf"
    if k == "masked_leak":
        return f"masked positions get attention in `{name}`"
    if k == "row_sum":
        return f"rows of `{name}` do not sum to 1 over the keys"
    if k == "perturbed_changed":
        return f"`{name}` changes when only a masked key/value changes"
    return problem_text(p).split("\n")[0]


def summary_evidence(cause: Cause, case: Any, problems: tuple[Problem, ...], headline_given: bool) -> str:
    """What a cause's first case showed, below its title (a traceback, the values that differ).

    ``headline_given``: the title did not quote the first problem (a group's headline, or a
    mistake's name), so it is shown here in full.
    """
    if cause.kind == "exception":
        return str(cause.data["error"].get("traceback", ""))
    if cause.kind == "forbidden":  # the title, where and fix say it; more than one use is listed
        return "\n".join(problem_text(p, case) for p in problems[1:])
    if cause.kind != "wrong_answer":
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
