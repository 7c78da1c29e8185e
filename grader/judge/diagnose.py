"""Naming known mistakes: does a failing case's observation match a mistake variant's?

Pure: the variants' observations come from ``grader.course.store``. A mistake is named for a
case when the student's outputs match the variant's there and the variant can be told
from the reference in that case.
"""
from __future__ import annotations

import numpy as np

from grader.execute.observation import Observation, Tensors
from grader.judge.checks import MASK_FILL_FLOOR
from grader.spec.cases import Case
from grader.spec.mistakes import Mistake

#: mistake id -> case id -> the variant's observation of that case
Variants = dict[str, dict[str, Observation]]


def diagnose(case: Case, ref: Observation, stu: Observation | None, variants: Variants,
             mistakes: list[Mistake]) -> list[Mistake]:
    """The known mistakes whose outputs the student's match in this case (and the reference's don't)."""
    if stu is None:
        return []
    found = []
    for m in mistakes:
        v = variants.get(m.id, {}).get(case.id)
        if v is None:
            continue
        if v.status == "error":
            if (stu.status == "error" and v.error is not None and stu.error is not None
                    and stu.error.type == v.error.type and stu.phase == v.phase):
                found.append(m)
            continue
        if stu.status != "ok" or _same(v.tensors, ref.tensors, case):
            continue  # the variant can't be told from the reference here
        if _same(v.tensors, stu.tensors, case):
            found.append(m)
    return found


def _same(a: Tensors, b: Tensors, case: Case) -> bool:
    keys = [k for k in a if k.startswith(("out/", "pout/", "grad/"))]
    if not keys:
        return False
    for k in keys:
        x, y = a[k], b.get(k)
        if y is None or x.shape != y.shape:
            return False
        with np.errstate(all="ignore"):
            x, y = x.astype(np.float64), y.astype(np.float64)
            masked = (x <= MASK_FILL_FLOOR) & (y <= MASK_FILL_FLOOR)
            if not np.all(np.isclose(y, x, rtol=case.rtol, atol=case.atol) | masked):
                return False
    return True
