"""Naming known mistakes: does a failing case's observation match a mistake variant's?

Pure: the variants' observations come from ``grader.course.reference_outputs``. A mistake is named for a
case when the student's outputs match the variant's there and the variant can be told
from the reference in that case, or when the mistake declares a ``signature`` (a property
of the outputs that the mistake leaves, written differently or not) and the student's
outputs show it where the reference's do not. The detectors are below (``DETECTORS``).
"""
from __future__ import annotations

import numpy as np

from grader.execute.observation import Observation, Tensors
from grader.judge.checks import MASK_FILL_FLOOR
from grader.spec.cases import Case, Target
from grader.spec.mistakes import Mistake

#: mistake id -> case id -> the variant's observation of that case
Variants = dict[str, dict[str, Observation]]


def diagnose(case: Case, ref: Observation, stu: Observation | None, variants: Variants,
             mistakes: list[Mistake], target: Target | None = None) -> list[Mistake]:
    """The known mistakes whose outputs the student's match in this case (and the reference's don't),
    or whose signature the student's outputs show. ``target`` names the attention output (without
    it, an output called ``attention``)."""
    if stu is None:
        return []
    attention = target.attention if target is not None else ("attention" if "out/attention" in ref.tensors else None)
    return [m for m in mistakes
            if _matches_variant(case, ref, stu, variants.get(m.id, {}).get(case.id))
            or (m.signature in DETECTORS and stu.status == "ok" and ref.status == "ok"
                and DETECTORS[m.signature](case, attention, ref.tensors, stu.tensors))]


def tells_apart(case: Case, ref: Observation, variant: Observation) -> bool:
    """Whether a mistake's run of ``case`` can be told from the reference's: another status, another
    exception, or outputs that differ beyond the case's tolerance. A mistake that no case tells apart
    can never be named from its variant (``grade validate`` flags it)."""
    if variant.status != ref.status:
        return True
    if ref.status == "error":
        return (ref.error.type if ref.error else None, ref.phase) != (
            variant.error.type if variant.error else None, variant.phase)
    if variant.params != ref.params:
        return True
    outputs = {k for k in ref.tensors if k.startswith(_COMPARED)}
    if outputs != {k for k in variant.tensors if k.startswith(_COMPARED)}:
        return True
    return bool(outputs) and not _same(variant.tensors, ref.tensors, case)  # no outputs (a policy case): alike


def _matches_variant(case: Case, ref: Observation, stu: Observation, v: Observation | None) -> bool:
    if v is None:
        return False
    if v.status == "error":
        if ref.status == "error" and ref.error is not None and v.error is not None \
                and (ref.error.type, ref.phase) == (v.error.type, v.phase):
            return False  # the reference raises the same here (a case that expects an exception)
        return (stu.status == "error" and v.error is not None and stu.error is not None
                and stu.error.type == v.error.type and stu.phase == v.phase)
    if stu.status != "ok" or _same(v.tensors, ref.tensors, case):
        return False  # the variant can't be told from the reference here
    return _same(v.tensors, stu.tensors, case)


#: The tensors of a run that are its results (the rest are the inputs it was given).
_COMPARED = ("out/", "pout/", "grad/")


def _same(a: Tensors, b: Tensors, case: Case) -> bool:
    keys = [k for k in a if k.startswith(_COMPARED)]
    if not keys:
        return False
    for k in keys:
        x, y = a[k], b.get(k)
        if y is None or x.shape != y.shape:
            return False
        with np.errstate(all="ignore"):
            x, y = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
            # np.isclose(y, x) without its overhead: |y - x| <= atol + rtol·|x|, and equal infinities
            close = (np.abs(y - x) <= case.atol + case.rtol * np.abs(x)) | (x == y)
            if not close.all() and not (close | ((x <= MASK_FILL_FLOOR) & (y <= MASK_FILL_FLOOR))).all():
                return False
    return True


# --------------------------------------------------------------------------- signatures
# Each detector: (case, the target's attention output name or None, the reference's tensors,
# the student's) -> True only when the student's outputs show the property and the reference's
# do not. Total over any tensors: a missing output, another shape, NaN or inf is no evidence.

#: How far from 1 a sum of weights may be and still count as 1.
SUM_TOL = 1e-3
#: How far from an integer a score (or a log-ratio of two weights) may be and still count as one.
INTEGER_TOL = 1e-3


def softmax_dim(case: Case, attention: str | None, ref: Tensors, stu: Tensors) -> bool:
    """Softmax over the wrong dim: the student's weights don't sum to 1 over the last dim but do over
    another, over which the reference's don't. Slices with a non-finite weight are left out."""
    e, g = _pair(ref, stu, attention)
    if e is None or g is None or g.ndim < 2:
        return False
    if _sums_to_one(e, -1) is not True or _sums_to_one(g, -1) is not False:
        return False
    return any(_sums_to_one(g, d) is True and _sums_to_one(e, d) is not True for d in range(g.ndim - 1))


def integer_scores(case: Case, attention: str | None, ref: Tensors, stu: Tensors) -> bool:
    """Quantised scores (floor division, a cast to int): the student's ``scores`` are integers where the
    reference's are not; or, from the attention weights, every row's log-ratios are integers."""
    e, g = _pair(ref, stu, "scores")
    if e is not None and g is not None and _integer_valued(g) is True and _integer_valued(e) is False:
        return True
    e, g = _pair(ref, stu, attention)
    return e is not None and g is not None and _integer_log_ratios(g) is True and _integer_log_ratios(e) is False


#: signature name (``grader.spec.mistakes.SIGNATURES``) -> its detector
DETECTORS = {"softmax_dim": softmax_dim, "integer_scores": integer_scores}


def _pair(ref: Tensors, stu: Tensors, name: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The reference's and the student's output ``name`` as float64, when both exist with one shape."""
    if not name:
        return None, None
    e, g = ref.get("out/" + name), stu.get("out/" + name)
    if e is None or g is None or e.shape != g.shape or e.size == 0:
        return None, None
    return e.astype(np.float64), g.astype(np.float64)


def _sums_to_one(a: np.ndarray, axis: int) -> bool | None:
    """Whether every all-finite slice of ``a`` along ``axis`` sums to 1 (None: no such slice)."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(a).all(axis=axis)
        if not finite.any():
            return None
        sums = np.where(np.isfinite(a), a, 0.0).sum(axis=axis)[finite]
    return bool(np.all(np.abs(sums - 1.0) <= SUM_TOL))


def _integer_valued(a: np.ndarray) -> bool | None:
    """Whether the finite, unmasked values of ``a`` are all integers (None: fewer than two distinct ones)."""
    with np.errstate(all="ignore"):
        live = a[np.isfinite(a) & (a > MASK_FILL_FLOOR)]
        if live.size < 2 or live.min() == live.max():
            return None
        return bool(np.all(np.abs(live - np.round(live)) <= INTEGER_TOL))


def _integer_log_ratios(att: np.ndarray) -> bool | None:
    """Whether, in every row (last dim) of attention weights, log(w / max w) is an integer for every
    weight that is neither 0 (masked) nor too small to measure; None when no row shows a ratio.
    Softmax keeps score differences as log-ratios: exp(s_i) / exp(s_j) = exp(s_i - s_j)."""
    if att.ndim < 1:
        return None
    with np.errstate(all="ignore"):
        att = att.reshape(-1, att.shape[-1]) if att.shape[-1] else att.reshape(0, 1)
        rows = att[np.isfinite(att).all(axis=1) & (att >= 0).all(axis=1)]  # rows that can be weights
        live = rows > 1e-30
        if not live.any():
            return None
        top = np.where(live, rows, 0.0).max(axis=1, keepdims=True)
        ratios = np.log(rows[live & (top > 0)] / np.broadcast_to(top, rows.shape)[live & (top > 0)])
        if not ratios.size or np.abs(ratios).max() < 0.5:
            return None  # every weight equals its row's largest: nothing to measure
        return bool(np.all(np.abs(ratios - np.round(ratios)) <= INTEGER_TOL))
