"""When a case's hint is about its failure: the evidence a failure shows, read from its facts.

A hint is written for one concern (``Case.hint_on``, from ``grader.spec.cases.EVIDENCE``):
"size h0 from the input" is about shapes and errors in forward, not about a constructor
that raised or a wrong scale. A case shows its hint only when its cause or problems carry
that evidence, and never when a known mistake explains the case (its own hint is better).
"""
from __future__ import annotations

import re

from grader.model.outcomes import Cause, Problem

#: problem kind -> the evidence it is (``value_differs`` and ``shape_differs`` depend on ``grad``)
_PROBLEM_EVIDENCE = {
    "missing_output": "shape", "shape_differs": "shape", "value_differs": "values", "scale": "values",
    "equals_other": "values", "masked_leak": "mask", "perturbed_changed": "mask", "row_sum": "softmax",
    "no_gradient": "unused", "param_missing": "parameters", "param_shape": "parameters",
    "param_unexpected": "parameters", "param_count": "parameters", "did_not_raise": "raises",
    "raised_other": "raises", "forbidden_static": "forbidden", "forbidden_runtime": "forbidden", "custom": "custom",
}
_BUILD_PHASES = ("build", "load_params")
#: An exception whose message is about sizes that do not fit (torch's and Python's wording: "shape",
#: "size", "dimension", "mat1 and mat2", "broadcast"): only such an exception is evidence for a hint
#: about shapes (``shape_error``); a plain ``RuntimeError("boom")`` is only ``error``.
_ABOUT_SHAPES = re.compile(r"shape|size|dimension|\bdims?\b|mat1 and mat2|cannot be multiplied|broadcast", re.I)


def evidence(cause: Cause | None, problems: tuple[Problem, ...]) -> set[str]:
    """What a failure shows: the evidence names of its problems and its cause."""
    found: set[str] = set()
    if cause is not None and cause.kind == "exception":
        if cause.data.get("phase") in _BUILD_PHASES:
            found.add("build_error")
        else:
            found.add("error")
            if _ABOUT_SHAPES.search(str((cause.data.get("error") or {}).get("message", ""))):
                found.add("shape_error")
    for p in problems:
        kind = _PROBLEM_EVIDENCE.get(p.kind)
        if p.kind == "non_finite":
            kind = "mask" if p.data.get("purpose") in ("mask", "masking") else "values"
        elif p.data.get("grad") and kind in ("values", "shape"):
            kind = "gradient"
        if kind:
            found.add(kind)
    return found


def hint_applies(hint_on: tuple[str, ...], cause: Cause | None, problems: tuple[Problem, ...]) -> bool:
    """True when the failure shows evidence of what the hint is about."""
    return bool(set(hint_on) & evidence(cause, problems))
