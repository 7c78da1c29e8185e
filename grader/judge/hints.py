"""When a case's hint is about its failure: the evidence a failure shows, read from its facts.

A hint is written for one concern (``Case.hint_on``, from ``grader.spec.cases.EVIDENCE``):
"size h0 from the input" is about shapes and errors in forward, not about a constructor
that raised or a wrong scale. A case shows its hint only when its cause or problems carry
that evidence, and never when a known mistake explains the case (its own hint is better).
"""
from __future__ import annotations

import re

from grader.model.outcomes import (Cause, Custom, DidNotRaise, EqualsOther, ForbiddenRuntime, ForbiddenStatic,
                                    MaskedLeak, MissingOutput, NoGradient, NonFinite, ParamCount, ParamMissing,
                                    ParamShape, ParamUnexpected, PerturbedChanged, Problem, Raised, RaisedOther, RowSum,
                                    Scale, ShapeDiffers, ValueDiffers)

#: problem class -> the evidence it is (a gradient's values and shape are ``gradient``; a ``NonFinite``'s
#: depends on its ``purpose``)
_PROBLEM_EVIDENCE: dict[type[Problem], str] = {
    MissingOutput: "shape", ShapeDiffers: "shape", ValueDiffers: "values", Scale: "values", EqualsOther: "values",
    MaskedLeak: "mask", PerturbedChanged: "mask", RowSum: "softmax", NoGradient: "unused",
    ParamMissing: "parameters", ParamShape: "parameters", ParamUnexpected: "parameters", ParamCount: "parameters",
    DidNotRaise: "raises", RaisedOther: "raises", ForbiddenStatic: "forbidden", ForbiddenRuntime: "forbidden",
    Custom: "custom",
}
_BUILD_PHASES = ("build", "load_params")
#: An exception whose message is about sizes that do not fit (torch's and Python's wording: "shape",
#: "size", "dimension", "mat1 and mat2", "broadcast"): only such an exception is evidence for a hint
#: about shapes (``shape_error``); a plain ``RuntimeError("boom")`` is only ``error``.
_ABOUT_SHAPES = re.compile(r"shape|size|dimension|\bdims?\b|mat1 and mat2|cannot be multiplied|broadcast", re.I)


def evidence(cause: Cause | None, problems: tuple[Problem, ...]) -> set[str]:
    """What a failure shows: the evidence names of its problems and its cause."""
    found: set[str] = set()
    if isinstance(cause, Raised):
        if cause.phase in _BUILD_PHASES:
            found.add("build_error")
        else:
            found.add("error")
            if _ABOUT_SHAPES.search(cause.error.message):
                found.add("shape_error")
    for p in problems:
        kind = _PROBLEM_EVIDENCE.get(type(p))
        if isinstance(p, NonFinite):
            kind = "mask" if p.purpose in ("mask", "masking") else "values"
        elif isinstance(p, (ShapeDiffers, ValueDiffers, Scale)) and p.grad:
            kind = "gradient"
        if kind:
            found.add(kind)
    return found


def hint_applies(hint_on: tuple[str, ...], cause: Cause | None, problems: tuple[Problem, ...]) -> bool:
    """True when the failure shows evidence of what the hint is about."""
    return bool(set(hint_on) & evidence(cause, problems))
