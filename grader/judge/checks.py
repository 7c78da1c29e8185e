"""Verdicts: compare a student's outputs with the reference's, in the trusted parent.

Pure functions over numpy arrays and plain records; nothing here runs student code.
``evaluate_case`` turns one case's captured run into a ``CheckResult``: ``error`` when
the student's code could not run, ``failed`` when it ran and gave a wrong answer.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from grader.spec.cases import Case, Target
from grader.execute.protocol import UNROLL_OUTPUTS
from grader.report.result import CheckResult

Tensors = dict[str, np.ndarray]
#: How close masked attention weights must be to 0, and rows' sums to 1.
MASKED_WEIGHT_TOL = 1e-6
ROW_SUM_TOL = 1e-4
#: Scores at or below this are a mask fill (-1e9, -inf, finfo.min): all count as equal.
MASK_FILL_FLOOR = -1e8


def evaluate_case(case: Case, target: Target, ref: Tensors, ref_record: dict[str, Any],
                  stu: Tensors, stu_record: dict[str, Any] | None, unavailable: str | None = None,
                  custom: dict[str, Callable[..., list[str]]] | None = None) -> CheckResult:
    """Classify one case. ``unavailable`` explains a missing record (class not found, worker died);
    ``custom`` are the assignment's own check functions."""
    custom = custom or {}
    def result(status: str, reason: str, details: str = "") -> CheckResult:
        if case.hint and status != "passed" and stu_record is not None:
            details = (details + "\n" if details else "") + f"Hint: {case.hint}"
        return CheckResult(case.id, case.name, case.target, status, case.points if status == "passed" else 0.0,
                           case.points, reason, details, "hidden" if case.hidden else "visible",
                           float(stu_record.get("duration", 0.0)) if stu_record else 0.0)

    if stu_record is None:
        return result("error", unavailable or "not run")
    if stu_record["status"] == "error":
        err = stu_record["error"]
        if case.raises and stu_record.get("phase") == "build":
            if case.raises in err["mro"]:
                return result("passed", f"raised {err['type']} as required")
            return result("failed", f"raised {err['type']} ({err['message']}), expected {case.raises}")
        reason = describe_student_error(err, stu_record.get("phase"), case.target)
        return result("error", reason, err.get("traceback", ""))
    if case.raises:
        return result("failed", f"{case.target}({_kwargs(case.init)}) did not raise {case.raises}")
    problems: list[str] = []
    for check in case.checks:
        function = CHECK_FUNCTIONS.get(check) or custom.get(check)
        problems += function(case, target, ref, ref_record, stu, stu_record)
    if not problems:
        return result("passed", "")
    return result("failed", problems[0].split("\n")[0], "\n".join(problems))


def describe_student_error(err: dict[str, Any], phase: str | None, target: str) -> str:
    """'RuntimeError in cell 7, line 21 (forward): <message>' for a captured exception."""
    where = ""
    if err.get("label"):
        where = f" in {err['label']}, line {err['line']}"
        if err.get("function") and err["function"] != "<module>":
            where += f" ({err['function']})"
        if err.get("code"):
            where += f": `{err['code']}`"
    message = " ".join(err["message"].split())
    during = {"build": f"while building {target}", "load_params": "while loading the reference's parameters",
              "forward": "", "backward": "during backward", "perturbed forward": ""}.get(phase or "", "")
    lead = f"{err['type']}{where}"
    if not err.get("student_error", True):
        return f"{message}" if not where else f"{message} ({where.strip()})"
    return f"{lead}{' ' + during if during else ''} — {message}" if message else f"{lead} {during}".strip()


def check_shape(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """Every output the reference returns is present with the same shape."""
    problems = []
    for name in _output_order(case, target, ref):
        if "out/" + name not in stu:
            where = "the returned dict" if target.returns == "dict" else "the outputs"
            problems.append(f"`{name}` is missing from {where}")
            continue
        problems += _shape_problem(name, ref["out/" + name], stu["out/" + name])
    return problems


def check_match(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """Outputs equal the reference's within tolerance; the first that diverges (in data-flow
    order) is explained, the ones after it are listed as following from it."""
    names = list(case.compare) or _output_order(case, target, ref)
    problems: list[str] = []
    downstream: list[str] = []
    for name in names:
        exp, got = ref.get("out/" + name), stu.get("out/" + name)
        if got is None:
            problems.append(f"`{name}` is missing, so it cannot be compared")
            continue
        found = _value_problem(name, exp, got, case)
        if found and any("differs" in p or " is " in p for p in problems):
            downstream.append(name)
        else:
            problems += found
    if downstream:
        problems.append(f"{', '.join(f'`{n}`' for n in downstream)} differ too, which may follow from the first "
                        "difference above")
    return problems


def check_mask(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """Masked attention weights are ~0 and each row of weights sums to 1."""
    name = target.attention
    att = stu.get("out/" + name)
    if att is None:
        return [f"`{name}` is missing, so the mask cannot be checked"]
    exp = ref["out/" + name]
    if att.shape != exp.shape:
        return _shape_problem(name, exp, att)
    att = att.astype(np.float64)
    mask = np.broadcast_to(ref["in/mask"], att.shape)
    problems = []
    leaked = np.where(mask == 0, np.abs(att), 0.0)
    if leaked.max() > MASKED_WEIGHT_TOL:
        idx = np.unravel_index(np.argmax(leaked), att.shape)
        problems.append(f"masked positions get attention: `{name}`{_index(idx)} = {att[idx]:.4g} where mask == 0 "
                        "(expected ≈ 0; fill the masked scores with -1e9 before the softmax)")
    sums = att.sum(axis=-1)
    worst = np.abs(sums - 1.0)
    if worst.max() > ROW_SUM_TOL:
        idx = np.unravel_index(np.argmax(worst), sums.shape)
        problems.append(f"rows of `{name}` must sum to 1 over the keys (last dim); row{_index(idx)} sums to "
                        f"{sums[idx]:.4g} (is the softmax over dim=-1?)")
    return problems


def check_mask_invariance(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors,
                          stu_record: dict) -> list[str]:
    """Changing the last key/value changes no output row whose query cannot see that key."""
    name = target.final
    base, pert, att = stu.get("out/" + name), stu.get("pout/" + name), ref["out/" + target.attention]
    if base is None or pert is None:
        return [f"`{name}` is missing, so masking cannot be checked"]
    if base.shape != ref["out/" + name].shape:
        return _shape_problem(name, ref["out/" + name], base)
    rows = np.broadcast_to(ref["in/mask"], att.shape)[..., -1] == 0  # queries that must not see the last key
    while rows.ndim > base.ndim - 1:  # multi-head: a row of x is unaffected only if masked in every head
        rows = rows.all(axis=1)
    changed = np.abs(base.astype(np.float64) - pert.astype(np.float64)).max(axis=-1) > case.atol + case.rtol
    leaked = changed & rows
    if leaked.any():
        idx = tuple(int(i) for i in np.argwhere(leaked)[0])
        return [f"`{name}` changed at row{_index(idx)} when only a masked key/value was changed "
                "(masked positions must not influence the output)"]
    return []


def check_grad(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """Every parameter's gradient of the seeded loss equals the reference's."""
    problems = []
    order = [k for k in ref_record.get("params", {}) if "grad/" + k in ref]
    for name in order + [k for k in _outputs(ref, "grad/") if k not in order]:
        got = stu.get("grad/" + name)
        if got is None:
            problems.append(f"parameter `{name}` received no gradient (is it used in forward?)")
            continue
        problems += _value_problem(f"gradient of {name}", ref["grad/" + name], got, case, grad=True)
    return problems


def check_params(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """Parameter names and shapes equal the template's."""
    exp, got = ref_record.get("params", {}), stu_record.get("params", {})
    problems = []
    for k, shape in exp.items():
        if k not in got:
            problems.append(f"parameter `{k}` {shape} is missing")
        elif got[k] != shape:
            problems.append(f"parameter `{k}` has shape {got[k]}, expected {shape}")
    problems += [f"unexpected parameter `{k}` {s}" for k, s in got.items() if k not in exp]
    return problems


def check_param_count(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors,
                      stu_record: dict) -> list[str]:
    """The total number of parameters equals the reference's."""
    exp = sum(math.prod(s) for s in ref_record.get("params", {}).values())
    got = sum(math.prod(s) for s in stu_record.get("params", {}).values())
    return [] if exp == got else [f"{case.target}({_kwargs(case.init)}) has {got:,} parameters, expected {exp:,}"]


def check_policy(case: Case, target: Target, ref: Tensors, ref_record: dict, stu: Tensors, stu_record: dict) -> list[str]:
    """No forbidden API is used (found statically by grader.plan.policy before the run)."""
    return list(stu_record.get("policy", []))


def _check_raises(*_: Any) -> list[str]:
    return []  # decided in evaluate_case from the build phase's outcome


CHECK_FUNCTIONS: dict[str, Callable[..., list[str]]] = {
    "shape": check_shape, "match": check_match, "mask": check_mask, "mask_invariance": check_mask_invariance,
    "grad": check_grad, "raises": _check_raises, "params": check_params, "param_count": check_param_count,
    "policy": check_policy,
}


def _outputs(tensors: Tensors, prefix: str) -> list[str]:
    return [k[len(prefix):] for k in tensors if k.startswith(prefix)]


def _output_order(case: Case, target: Target, ref: Tensors) -> list[str]:
    """The reference's outputs in data-flow order (the order the target declares them)."""
    declared = (target.flow or target.output_names) if case.call == "forward" else UNROLL_OUTPUTS
    present = _outputs(ref, "out/")
    return [n for n in declared if n in present] + [n for n in present if n not in declared]


def _shape_problem(name: str, exp: np.ndarray, got: np.ndarray) -> list[str]:
    if exp.shape == got.shape:
        return []
    msg = f"`{name}` has shape {list(got.shape)}, expected {list(exp.shape)}"
    if len(exp.shape) != len(got.shape):
        msg += f" ({len(got.shape)} dims instead of {len(exp.shape)})"
    else:
        dims = [i for i, (a, b) in enumerate(zip(exp.shape, got.shape)) if a != b]
        msg += f" (dim{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims))} differ{'' if len(dims) > 1 else 's'})"
    return [msg]


def _value_problem(name: str, exp: np.ndarray, got: np.ndarray, case: Case, grad: bool = False) -> list[str]:
    if exp.shape != got.shape:
        return _shape_problem(name, exp, got)
    if got.dtype.kind not in "fiub":
        return [f"`{name}` has dtype {got.dtype}, expected a real tensor"]
    e, g = exp.astype(np.float64), got.astype(np.float64)
    bad = ~np.isclose(g, e, rtol=case.rtol, atol=case.atol, equal_nan=False)
    bad &= ~((e <= MASK_FILL_FLOOR) & (g <= MASK_FILL_FLOOR))  # -1e9 and -inf both mean "masked"
    if not bad.any():
        return []
    diff = np.where(np.isfinite(g), np.abs(g - e), np.inf)
    idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), e.shape) if e.ndim else ()
    label = name if grad else f"`{name}`"
    live = bad & np.isfinite(g) & (np.abs(e) > case.atol)
    rel = float((np.abs(g - e)[live] / np.abs(e)[live]).max()) if live.any() else float("inf")
    msg = (f"{label} differs from the reference: max abs diff {float(diff[bad].max()):.3g}, max rel diff "
           f"{rel:.3g}, at{_index(idx)} (expected {e[idx]:.5g}, got {g[idx]:.5g}; {int(bad.sum())} of "
           f"{bad.size} values off)")
    if name == "h_seq" and e.ndim == 3:  # an unrolled recurrence: name the first step that goes wrong
        first = int(np.argmax(bad.any(axis=(0, 2))))
        msg += f"; the first time step that differs is t={first}" + (" (the very first step)" if first == 0 else "")
    if not np.isfinite(g).all():
        msg += "; it contains NaN or inf"
    if e.ndim and e.shape[-1] > 1:
        row = idx[:-1]
        msg += f"\n      expected{_index(row)}: {_excerpt(e[row])}\n      got     {_index(row)}: {_excerpt(g[row])}"
    scale = explain_scale(e, g, case, scores=(name == "scores"))
    return [f"{label} is {scale}", msg] if scale else [msg]


def _excerpt(row: np.ndarray, n: int = 6) -> str:
    """The first values of a row, for a side-by-side look."""
    shown = ", ".join(f"{v:.4g}" if v > MASK_FILL_FLOOR else "masked" for v in row[:n])
    return f"[{shown}{', …' if row.size > n else ''}]"


def explain_scale(exp: np.ndarray, got: np.ndarray, case: Case, scores: bool = False) -> str:
    """When ``got`` is a constant multiple of ``exp``, say so; for attention scores, name the known causes."""
    live = (exp > MASK_FILL_FLOOR) & (got > MASK_FILL_FLOOR)  # masked entries carry no scale
    exp, got = exp[live], got[live]
    if not (exp.size and np.isfinite(got).all() and np.abs(exp).max() > 0):
        return ""
    c = float((got * exp).sum() / (exp * exp).sum())
    if abs(c - 1) < 1e-3 or not np.allclose(got, c * exp, rtol=1e-3, atol=1e-6):
        return ""
    text = f"{c:.4g}× the expected values"
    for cause, factor in (_known_factors(case) if scores else {}).items():
        if math.isclose(c, factor, rel_tol=1e-3):
            return f"{text} — {cause}"
    return text


def _known_factors(case: Case) -> dict[str, float]:
    init = case.init
    factors: dict[str, float] = {}
    if "d_feat" in init and "n_head" in init:
        d_feat, d_head = init["d_feat"], init["d_feat"] // init["n_head"]
        factors["that is what dividing by √d_feat instead of √d_head gives (divide the scores by √d_head, "
                "the size of one head)"] = math.sqrt(d_head / d_feat)
        factors["the scores are not scaled at all (divide by √d_head)"] = math.sqrt(d_head)
    k = case.inputs.get("K")
    if k and isinstance(k[0], int):
        factors["the scores are not scaled at all (divide by √d_K)"] = math.sqrt(k[-1])
    return factors


def _index(idx: tuple) -> str:
    return f" [{', '.join(str(int(i)) for i in idx)}]" if idx else ""


def _kwargs(init: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in init.items())


def with_diagnosis(result: CheckResult, names_and_hints: list[tuple[str, str]]) -> CheckResult:
    """The result led by the known mistake(s) its outputs match; what differs moves to the details."""
    if not names_and_hints or result.status == "passed":
        return result
    if len(names_and_hints) == 1:
        name, hint = names_and_hints[0]
        reason = f"Known mistake: {name}. {hint}".strip()
    else:
        reason = "Known mistake, one of: " + "; ".join(name for name, _ in names_and_hints)
    details = result.details if result.details.startswith(result.reason) else \
        "\n".join(x for x in (result.reason, result.details) if x)
    return dataclasses.replace(result, reason=reason, details=details)


def attention_figure(case: Case, target: Target, ref: Tensors, stu: Tensors) -> dict[str, Any] | None:
    """The first query-by-key attention map (batch 0, head 0), expected and got, with the mask."""
    if not target.attention:
        return None
    exp, got = ref.get("out/" + target.attention), stu.get("out/" + target.attention)
    if exp is None or exp.ndim < 2:
        return None
    lead = (0,) * (exp.ndim - 2)
    mask = np.broadcast_to(ref["in/mask"], exp.shape) if "in/mask" in ref else None
    if got is not None and got.shape == exp.shape and not np.allclose(got, exp, rtol=case.rtol, atol=case.atol):
        diff = np.nan_to_num(np.abs(got.astype(np.float64) - exp), nan=np.inf)
        lead = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), exp.shape)[:-2])  # where it's worst
    elif mask is not None and (mask == 0).any():
        lead = tuple(int(i) for i in np.argwhere(mask == 0)[0][:-2])  # where masking shows
    figure: dict[str, Any] = {"title": f"{target.attention}{_index(lead)} (batch, head…): queries × keys",
                              "expected": np.round(exp[lead].astype(np.float64), 4).tolist(), "got": None, "mask": None}
    if got is not None and got.shape == exp.shape:
        figure["got"] = np.round(np.nan_to_num(got[lead].astype(np.float64), nan=-1.0), 4).tolist()
    if mask is not None:
        figure["mask"] = mask[lead].astype(int).tolist()
    return figure
