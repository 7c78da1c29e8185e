"""Building a worker's job from the course's cases and the planned statements (parent side)."""
from __future__ import annotations

import uuid
from typing import Iterable

from grader.execute.protocol import CallSpec, Job, StatementSpec
from grader.plan.slicing import Statement
from grader.spec.cases import Assignment, Case


def call_spec(case: Case, assignment: Assignment, watch_forbidden: bool = False) -> CallSpec:
    """The worker's instructions for one case (the same for the reference and a student).

    ``watch_forbidden``: have the worker watch the target's forbidden APIs at run time
    (a student's run; the reference and the mistake variants are trusted).
    """
    target = assignment.targets[case.target]
    return CallSpec(
        id=case.id, target=case.target, init=dict(case.init), seed=case.seed, args=list(target.args),
        inputs=dict(case.inputs), dtypes=dict(case.dtypes), mask=case.mask, mask_rank=target.mask_rank,
        key_args=list(target.key_args), call=case.call,
        returns=target.returns if isinstance(target.returns, str) else list(target.returns),
        keys=list(target.keys), grad="grad" in case.checks,
        loss=list(target.loss) if case.call == "forward" and target.loss else [],
        perturb="mask_invariance" in case.checks,
        build_only="raises" in case.checks or not case.inputs,
        static_only=set(case.checks) <= {"policy"},
        forbid=list(target.forbid) if watch_forbidden else [],
    )


def make_job(mode: str, statements: Iterable[Statement], prefix: str, calls: list[CallSpec],
             inputs_size: int = 0) -> Job:
    """A job for ``statements`` (each unit's full source goes along, for line numbers in tracebacks)."""
    units: dict[str, dict[str, str]] = {}
    specs = []
    for s in statements:
        filename = f"<{prefix} {s.unit.label}>"
        units.setdefault(filename, {"label": s.unit.label, "source": s.unit.source})
        specs.append(StatementSpec(filename, s.lineno, s.source))
    return Job(mode, uuid.uuid4().hex, specs, units, calls, inputs_size)
