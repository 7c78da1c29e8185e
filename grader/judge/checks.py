"""The checks: compare a student's observation of a case with the reference's, in the parent.

Pure functions over numpy arrays; nothing here runs student code or words a message. Each
check returns the problems it found as ``Problem`` data (empty: passed), and is total over
whatever tensors arrive: any shape, any numeric dtype, NaN and inf (which never pass).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from grader.execute.observation import Observation, Tensors
from grader.execute.protocol import UNROLL_OUTPUTS
from grader.model.outcomes import (Downstream, EqualsOther, MaskedLeak, MissingOutput, NoGradient, NonFinite,
                                   ParamCount, ParamMissing, ParamShape, ParamUnexpected, PerturbedChanged, Problem,
                                   RowSum, Scale, ShapeDiffers, ValueDiffers)
from grader.spec.cases import Case, Target

#: How close masked attention weights must be to 0, and rows' sums to 1.
MASKED_WEIGHT_TOL = 1e-6
ROW_SUM_TOL = 1e-4
#: Scores at or below this are a mask fill (-1e9, -inf, finfo.min): all count as equal.
MASK_FILL_FLOOR = -1e8
#: Kinds of problems that mean "this output's values are wrong" (later ones may follow from it).
DIVERGENCES = ("value_differs", "scale")
#: Values this close (relative) to the largest are as large as it where a problem points at "the largest":
#: float32 results differ in their last bits from one CPU to the next, so the position shown is the first
#: of them, the same on every machine, not the one that won by its last bits.
NEAR_TIE = 1e-5

Check = Callable[[Case, Target, Observation, Observation], list[Problem]]


def check_shape(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Every output the reference returns is present with the same shape."""
    problems = []
    for name in output_order(case, target, ref.tensors):
        got = stu.tensors.get("out/" + name)
        if got is None:
            problems.append(MissingOutput(name, in_dict=target.returns == "dict"))
        else:
            problems += _shape_problem(name, ref.tensors["out/" + name], got)
    return problems


def check_match(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Outputs equal the reference's within tolerance; the first that diverges (in data-flow
    order) is explained, the ones after it are listed as following from it. An output that
    equals another of the reference's outputs (``x`` is the reference's ``x_rsh2``) says so."""
    order = output_order(case, target, ref.tensors)
    names = list(case.compare) or order
    problems: list[Problem] = []
    downstream: list[str] = []
    for name in names:
        exp, got = ref.tensors.get("out/" + name), stu.tensors.get("out/" + name)
        if exp is None:
            continue
        if got is None:
            problems.append(MissingOutput(name, purpose="compare"))
            continue
        found = value_problems(name, exp, got, case, scores=(name == "scores"))
        if found and any(p.kind in DIVERGENCES for p in problems):
            downstream.append(name)
        else:
            problems += found
            other = equal_other_output(name, got, ref.tensors, case, order) \
                if any(p.kind == "value_differs" for p in found) else None
            if other is not None:
                problems.append(EqualsOther(name, other))
    if downstream:
        problems.append(Downstream(downstream))
    return problems


def check_mask(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Attention weights are finite, ~0 where masked, and each row sums to 1."""
    name = target.attention or ""
    att, exp, mask = stu.tensors.get("out/" + name), ref.tensors.get("out/" + name), ref.tensors.get("in/mask")
    if exp is None or mask is None:
        return []
    if att is None:
        return [MissingOutput(name, purpose="mask")]
    if att.shape != exp.shape:
        return _shape_problem(name, exp, att)
    att = att.astype(np.float64)
    bad = _first_non_finite(att)
    if bad is not None:
        return [NonFinite(name, bad, purpose="mask")]
    problems = []
    leaked = np.where(np.broadcast_to(mask, att.shape) == 0, np.abs(att), 0.0)
    if leaked.size and leaked.max() > MASKED_WEIGHT_TOL:
        idx = _unravel(first_largest(leaked), att.shape)
        problems.append(MaskedLeak(name, list(idx), float(att[idx])))
    sums = att.sum(axis=-1)
    worst = np.abs(sums - 1.0)
    if worst.size and worst.max() > ROW_SUM_TOL:
        idx = _unravel(first_largest(worst), sums.shape)
        problems.append(RowSum(name, list(idx), float(sums[idx])))
    return problems


def check_mask_invariance(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Changing the last key/value changes no output row whose query cannot see that key."""
    name = target.final or ""
    exp, att, mask = (ref.tensors.get(k) for k in ("out/" + name, "out/" + (target.attention or ""), "in/mask"))
    if exp is None or att is None or mask is None:
        return []
    base, pert = stu.tensors.get("out/" + name), stu.tensors.get("pout/" + name)
    if base is None or pert is None:
        return [MissingOutput(name, purpose="masking")]
    for got in (base, pert):
        if got.shape != exp.shape:
            return _shape_problem(name, exp, got)
    base, pert = base.astype(np.float64), pert.astype(np.float64)
    for got in (base, pert):
        bad = _first_non_finite(got)
        if bad is not None:
            return [NonFinite(name, bad, purpose="masking")]
    rows = np.broadcast_to(mask, att.shape)[..., -1] == 0  # queries that must not see the last key
    while rows.ndim > base.ndim - 1:  # multi-head: a row of x is unaffected only if masked in every head
        rows = rows.all(axis=1)
    if rows.shape != base.shape[:-1]:
        return []  # a target whose output rows do not line up with the queries: nothing to compare
    changed = np.abs(base - pert).max(axis=-1) > case.atol + case.rtol
    leaked = changed & rows
    if leaked.any():
        return [PerturbedChanged(name, [int(i) for i in np.argwhere(leaked)[0]])]
    return []


def check_grad(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Every parameter's gradient of the seeded loss equals the reference's."""
    problems = []
    order = [k for k in ref.params if "grad/" + k in ref.tensors]
    for name in order + [k for k in _named(ref.tensors, "grad/") if k not in order]:
        got = stu.tensors.get("grad/" + name)
        if got is None:
            problems.append(NoGradient(name))
        else:
            problems += value_problems(name, ref.tensors["grad/" + name], got, case, grad=True)
    return problems


def check_params(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """Parameter names and shapes equal the template's."""
    problems = []
    for k, shape in ref.params.items():
        if k not in stu.params:
            problems.append(ParamMissing(k, list(shape)))
        elif stu.params[k] != shape:
            problems.append(ParamShape(k, list(stu.params[k]), list(shape)))
    problems += [ParamUnexpected(k, list(s)) for k, s in stu.params.items()
                 if k not in ref.params]
    return problems


def check_param_count(case: Case, target: Target, ref: Observation, stu: Observation) -> list[Problem]:
    """The total number of parameters equals the reference's."""
    exp = sum(math.prod(s) for s in ref.params.values())
    got = sum(math.prod(s) for s in stu.params.values())
    return [] if exp == got else [ParamCount(got, exp)]


CHECKS: dict[str, Check] = {
    "shape": check_shape, "match": check_match, "mask": check_mask, "mask_invariance": check_mask_invariance,
    "grad": check_grad, "params": check_params, "param_count": check_param_count,
}
#: Checks decided elsewhere: ``raises`` from the build phase's outcome, ``policy`` by ``judge.policy_result``.
DECIDED_ELSEWHERE = ("raises", "policy")


def output_order(case: Case, target: Target, ref: Tensors) -> list[str]:
    """The reference's outputs in data-flow order (the order the target declares them)."""
    declared = (target.flow or target.output_names) if case.call == "forward" else UNROLL_OUTPUTS
    present = _named(ref, "out/")
    return [n for n in declared if n in present] + [n for n in present if n not in declared]


def value_problems(name: str, exp: np.ndarray, got: np.ndarray, case: Case, grad: bool = False,
                   scores: bool = False) -> list[Problem]:
    """How ``got`` differs from ``exp`` (empty when equal within the case's tolerance)."""
    if exp.shape != got.shape:
        return _shape_problem(name, exp, got, grad)
    with np.errstate(all="ignore"):
        e, g = exp.astype(np.float64), got.astype(np.float64)
        bad = ~np.isclose(g, e, rtol=case.rtol, atol=case.atol, equal_nan=False)
        bad &= ~((e <= MASK_FILL_FLOOR) & (g <= MASK_FILL_FLOOR))  # -1e9 and -inf both mean "masked"
        if not bad.any():
            return []
        diff = np.where(np.isfinite(g), np.abs(g - e), np.inf)
        idx = _unravel(first_largest(np.where(bad, diff, -1.0)), e.shape)
        live = bad & np.isfinite(g) & (np.abs(e) > case.atol)
        rel = float((np.abs(g - e)[live] / np.abs(e)[live]).max()) if live.any() else math.inf
    row: dict[str, Any] = {}
    if e.ndim and e.shape[-1] > 1:
        at = tuple(idx[:-1])
        row = {"row": list(at), "expected_row": [float(v) for v in e[at][:6]],
               "got_row": [float(v) for v in g[at][:6]], "row_len": int(e.shape[-1])}
    problems: list[Problem] = [ValueDiffers(
        name=name, grad=grad, max_abs=float(diff[bad].max()), max_rel=rel, index=list(idx), expected=float(e[idx]),
        got=float(g[idx]), n_bad=int(bad.sum()), n_total=int(bad.size), non_finite=not bool(np.isfinite(g).all()),
        # an unrolled recurrence: the first step that goes wrong
        first_step=int(np.argmax(bad.any(axis=(0, 2)))) if name == "h_seq" and e.ndim == 3 else None, **row)]
    scale = scale_factor(e, g)
    if scale is not None:
        problems.insert(0, Scale(name=name, grad=grad, factor=scale, known=known_scale(scale, case) if scores else None))
    return problems


def equal_other_output(name: str, got: np.ndarray, ref: Tensors, case: Case, order: list[str]) -> str | None:
    """Another of the reference's outputs that ``got`` equals within tolerance (same shape, not
    constant): the nearest one before ``name`` in data-flow order, else the first after it."""
    pos = order.index(name) if name in order else len(order)
    before, after = order[:pos][::-1], order[pos + 1:]
    for other in before + after + [n for n in _named(ref, "out/") if n not in order and n != name]:
        e = ref.get("out/" + other)
        if e is None or e.shape != got.shape or not e.size:
            continue
        with np.errstate(all="ignore"):
            e64, g64 = e.astype(np.float64), got.astype(np.float64)
            if not np.isfinite(e64).all() or float(np.ptp(e64)) <= case.atol:
                continue  # a constant (or a masked fill) says nothing about where it came from
            if np.all(np.isclose(g64, e64, rtol=case.rtol, atol=case.atol)):
                return other
    return None


def scale_factor(exp: np.ndarray, got: np.ndarray) -> float | None:
    """The constant c when ``got`` ≈ c × ``exp`` (masked entries ignored), else None."""
    live = (exp > MASK_FILL_FLOOR) & (got > MASK_FILL_FLOOR)
    exp, got = exp[live], got[live]
    with np.errstate(all="ignore"):
        if not (exp.size and np.isfinite(got).all() and np.isfinite(exp).all() and np.abs(exp).max() > 0):
            return None
        c = float((got * exp).sum() / (exp * exp).sum())
        if not math.isfinite(c) or abs(c - 1) < 1e-3 or not np.allclose(got, c * exp, rtol=1e-3, atol=1e-6):
            return None
    return c


def known_scale(factor: float, case: Case) -> str | None:
    """Which known cause gives attention scores that are ``factor`` × the expected ones."""
    init = case.init
    factors: dict[str, float] = {}
    d_feat, n_head = init.get("d_feat"), init.get("n_head")
    if isinstance(d_feat, int) and isinstance(n_head, int) and n_head > 0 and d_feat >= n_head:
        d_head = d_feat // n_head
        factors["sqrt_d_feat"] = math.sqrt(d_head / d_feat)
        factors["unscaled_d_head"] = math.sqrt(d_head)
    k = case.inputs.get("K")
    if k and isinstance(k[0], int):
        factors["unscaled_d_k"] = math.sqrt(k[-1])
    return next((cause for cause, f in factors.items() if math.isclose(factor, f, rel_tol=1e-3)), None)


def first_largest(values: np.ndarray) -> int:
    """The flat index of the first of the largest of ``values`` (those within ``NEAR_TIE`` of the largest)."""
    top = float(values.max())
    if not math.isfinite(top):
        return int(np.argmax(values))
    return int(np.argmax(values >= top - NEAR_TIE * abs(top)))


def _shape_problem(name: str, exp: np.ndarray, got: np.ndarray, grad: bool = False) -> list[Problem]:
    if exp.shape == got.shape:
        return []
    return [ShapeDiffers(name=name, got=list(got.shape), expected=list(exp.shape), grad=grad)]


def _first_non_finite(a: np.ndarray) -> list[int] | None:
    bad = ~np.isfinite(a)
    return [int(i) for i in np.argwhere(bad)[0]] if bad.any() else None


def _unravel(flat: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()


def _named(tensors: Tensors, prefix: str) -> list[str]:
    return [k[len(prefix):] for k in tensors if k.startswith(prefix)]
