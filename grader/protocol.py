"""What crosses the process boundary between the grader and a worker: plain JSON and names.

The parent sends one job (JSON on the worker's stdin); the worker answers with JSON
lines on a dedicated pipe and writes tensors to safetensors files. No pickle anywhere.
This module is imported on both sides, so it must stay free of torch.
"""
from __future__ import annotations

from typing import Any

from grader.cases import Assignment, Case
from grader.slicing import Statement

#: Tensor name prefixes inside a call's tensors, e.g. "in/Q", "params/lin_Q.weight".
INPUT_PREFIXES = ("in/", "params/", "gradw/", "pin/")
OUTPUT_PREFIXES = ("out/", "grad/", "pout/")
#: Names of what an unrolled recurrent cell returns.
UNROLL_OUTPUTS = ("h_seq", "c_last")


def call_spec(case: Case, assignment: Assignment) -> dict[str, Any]:
    """The worker's instructions for one case (the same for the reference and a student)."""
    target = assignment.targets[case.target]
    loss = list(target.loss) if case.call == "forward" and target.loss else []
    return {
        "id": case.id,
        "target": case.target,
        "init": case.init,
        "seed": case.seed,
        "args": list(target.args),
        "inputs": case.inputs,
        "mask": case.mask,
        "mask_rank": target.mask_rank,
        "key_args": list(target.key_args),
        "call": case.call,
        "returns": target.returns if isinstance(target.returns, str) else list(target.returns),
        "keys": list(target.keys),
        "grad": "grad" in case.checks,
        "loss": loss,
        "perturb": "mask_invariance" in case.checks,
        "build_only": "raises" in case.checks or not case.inputs,
    }


def statement_payload(statements: tuple[Statement, ...] | list[Statement], prefix: str) -> dict[str, Any]:
    """The statements to execute, and each unit's full source (for line numbers in tracebacks)."""
    units: dict[str, dict[str, str]] = {}
    out = []
    for s in statements:
        filename = f"<{prefix} {s.unit.label}>"
        units.setdefault(filename, {"label": s.unit.label, "source": s.unit.source})
        out.append({"file": filename, "lineno": s.lineno, "source": s.source})
    return {"statements": out, "units": units}


def split_key(key: str) -> tuple[str, str]:
    """'case-id/out/x' -> ('case-id', 'out/x')."""
    cid, _, rest = key.partition("/")
    return cid, rest
