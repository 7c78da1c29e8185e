"""What one case's run produced, as the judge reads it: status, error, parameters and tensors.

The same type holds a student's run, the reference's and a known mistake's, whether it
came from a worker, the reference cache or a student bundle's fixtures: each is checked
by ``grader.execute.protocol`` and decoded here, once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors.numpy import load as load_tensors

from grader.execute.protocol import (INPUT_PREFIXES, OUTPUT_PREFIXES, CallRecord, ErrorInfo, ForbiddenUse,
                                     ProtocolViolation, call_record)

Tensors = dict[str, np.ndarray]
#: Largest rank of a tensor accepted from a worker.
MAX_RANK = 8


@dataclass(frozen=True)
class Observation:
    """One case's run: ``status`` is "ok" or "error" (``error`` says what was raised, in ``phase``)."""

    case_id: str
    status: str
    phase: str | None = None
    error: ErrorInfo | None = None
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    duration: float = 0.0
    forbidden: tuple[ForbiddenUse, ...] = ()
    #: "out/x", "grad/w", "pout/x" (and, for the reference, "in/…", "params/…", "gradw/…", "pin/…")
    tensors: Tensors = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The JSON-able part (what a fixture file or the cache stores beside the tensors)."""
        return {"id": self.case_id, "status": self.status, "phase": self.phase,
                "error": dataclasses.asdict(self.error) if self.error else None,
                "params": {k: list(v) for k, v in self.params.items()}, "duration": 0.0,
                "forbidden": [dataclasses.asdict(f) for f in self.forbidden]}


def observe(record: CallRecord, reference: bool = False) -> Observation:
    """Decode a call record's tensors; a payload that is not plain named numeric tensors is a violation."""
    prefixes = OUTPUT_PREFIXES + (INPUT_PREFIXES if reference else ())
    tensors: Tensors = {}
    if record.tensors:
        try:
            tensors = load_tensors(record.tensors)
        except Exception:  # safetensors raises its own error types for malformed bytes
            raise ProtocolViolation("a case's tensors are not valid safetensors data") from None
    for name, value in tensors.items():
        if not name.startswith(prefixes) or value.dtype.kind not in "fiub" or value.ndim > MAX_RANK:
            raise ProtocolViolation(f"a case returned an unexpected tensor {name[:80]!r} ({value.dtype}, "
                                    f"{value.ndim} dims)")
    return Observation(record.id, record.status, record.phase, record.error, record.params, record.duration,
                       record.forbidden, tensors)


def from_saved(record: dict[str, Any], tensors: Tensors) -> Observation:
    """An observation read back from a fixture file or the cache (checked like a worker's record)."""
    call = call_record(record)
    return Observation(call.id, call.status, call.phase, call.error, call.params, 0.0, call.forbidden, tensors)
