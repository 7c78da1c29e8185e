"""What crosses the process boundary between the grader and a worker: plain JSON and names.

The parent sends one job (JSON on the worker's stdin); the worker answers with JSON
lines on a dedicated pipe and writes tensors to safetensors files. No pickle anywhere.
This module is imported on both sides, so it must stay free of torch.
"""
from __future__ import annotations

from typing import Any

from grader.spec.cases import Assignment, Case
from grader.plan.slicing import Statement

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
        "dtypes": case.dtypes,
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
        "static_only": set(case.checks) <= {"policy"},  # decided from the source alone
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


def clean_record(record: dict[str, Any]) -> dict[str, Any]:
    """A call record reduced to the fields and types the checks read.

    Records come from a process running untrusted code, so nothing is taken on faith:
    a field of the wrong type is dropped or replaced, never passed on.
    """
    def text(v: Any, limit: int = 4000) -> str:
        return str(v)[:limit] if v is not None else ""

    out: dict[str, Any] = {"id": text(record.get("id"), 200),
                           "status": "ok" if record.get("status") == "ok" else "error",
                           "phase": text(record.get("phase"), 40) or None}
    try:
        out["duration"] = max(0.0, min(float(record.get("duration", 0.0)), 1e6))
    except (TypeError, ValueError):
        out["duration"] = 0.0
    params = record.get("params")
    if isinstance(params, dict):
        out["params"] = {text(k, 200): [int(d) for d in v] for k, v in list(params.items())[:10000]
                         if isinstance(v, list) and all(isinstance(d, int) and 0 <= d < 1 << 40 for d in v)}
    err = record.get("error")
    if out["status"] == "error":
        if not isinstance(err, dict):
            err = {"type": "Error", "message": "the submission's process sent a malformed record"}
        line = err.get("line")
        out["error"] = {
            "type": text(err.get("type"), 100) or "Error",
            "mro": [text(m, 100) for m in err.get("mro", [])][:50] if isinstance(err.get("mro"), list) else [],
            "message": text(err.get("message")), "traceback": text(err.get("traceback"), 8000),
            "label": text(err.get("label"), 100) or None, "line": line if isinstance(line, int) else None,
            "code": text(err.get("code"), 500) or None, "function": text(err.get("function"), 200) or None,
            "student_error": err.get("student_error") is not False,
        }
    else:
        out["error"] = None
    return out
