"""The reference's outputs for every case: computed once in a worker, then cached.

The reference runs in its own worker (never inside a student's), in ``generate`` mode:
it makes the seeded inputs, masks, parameters and loss weights, and the expected
outputs. The cache key covers everything that could change them: the reference file,
the cases file, the worker's code and the torch version.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from grader import protocol
from grader.cases import Assignment
from grader.errors import InternalError
from grader.protocol import INPUT_PREFIXES, call_spec, statement_payload
from grader.runner import Worker, WorkerRun
from grader.slicing import parse_units
from grader.submission import SourceUnit

CACHE_VERSION = "1"


@dataclass(frozen=True)
class ReferenceRun:
    """Expected tensors (``case-id/kind/name`` -> array) and the reference's call records."""

    tensors: dict[str, np.ndarray]
    records: dict[str, dict[str, Any]]

    def for_case(self, case_id: str) -> dict[str, np.ndarray]:
        """This case's tensors, keyed without the case prefix ("out/x", "in/mask", ...)."""
        prefix = case_id + "/"
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def write_inputs(self, path: Path) -> None:
        """Write what a student's worker may see: inputs, parameters, loss weights; no outputs."""
        given = {k: v for k, v in self.tensors.items() if protocol.split_key(k)[1].startswith(INPUT_PREFIXES)}
        save_file(given, str(path))


def _fingerprint(assignment: Assignment) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    for path in (assignment.reference, assignment.cases_file, Path(__file__).with_name("worker.py"),
                 Path(__file__).with_name("protocol.py")):
        h.update(path.read_bytes())
    try:
        h.update(importlib.metadata.version("torch").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return h.hexdigest()[:20]


def reference_outputs(assignment: Assignment, cache_dir: Path, use_cache: bool = True,
                      timeout: float = 300.0) -> ReferenceRun:
    """The reference's run for ``assignment``, from the cache when it is still valid."""
    if not assignment.reference.is_file():
        raise InternalError(f"reference solution {assignment.reference} not found; grading "
                            f"{assignment.name} needs the course's reference/ folder")
    folder = cache_dir / assignment.name / _fingerprint(assignment)
    tensors_file, records_file = folder / "expected.safetensors", folder / "records.json"
    if use_cache and tensors_file.is_file() and records_file.is_file():
        return ReferenceRun(load_file(str(tensors_file)), json.loads(records_file.read_text()))
    run = _run_reference(assignment, timeout)
    folder.mkdir(parents=True, exist_ok=True)
    tmp_t, tmp_r = folder / f".t{os.getpid()}", folder / f".r{os.getpid()}"
    save_file(run.tensors, str(tmp_t))
    tmp_r.write_text(json.dumps(run.records))
    os.replace(tmp_t, tensors_file)  # atomic: a concurrent grader sees old or new, never half
    os.replace(tmp_r, records_file)
    return run


def _run_reference(assignment: Assignment, timeout: float) -> ReferenceRun:
    source = assignment.reference.read_text(encoding="utf-8")
    unit = SourceUnit(1, assignment.reference.name, source)
    parsed = parse_units([unit])
    if parsed.syntax_errors:
        raise InternalError(f"reference {assignment.reference}: {parsed.syntax_errors[0].describe()}")
    job = {"mode": "generate", "calls": [call_spec(c, assignment) for c in assignment.cases],
           **statement_payload(parsed.statements, "reference")}
    with Worker() as worker:
        result = worker.run(job, timeout)
        return _collect(assignment, result)


def _collect(assignment: Assignment, result: WorkerRun) -> ReferenceRun:
    """Check the reference ran cleanly and merge its per-case tensor files (still on disk)."""
    if result.internal:
        raise InternalError(f"the worker failed while running the reference:\n{result.internal}")
    if result.exec_errors:
        raise InternalError(f"reference {assignment.reference} failed to run: {result.exec_errors[0]}")
    if not result.finished:
        raise InternalError(f"the reference run {result.stopped}\n{result.stderr}")
    tensors: dict[str, np.ndarray] = {}
    for case in assignment.cases:
        record = result.calls[case.id]
        expects_error = case.raises is not None
        if (record["status"] == "error") != expects_error:
            raise InternalError(f"reference {assignment.reference} on case {case.id!r}: "
                                f"{record['error'] or 'did not raise ' + str(case.raises)}")
        if record.get("file"):
            for k, v in load_file(record["file"]).items():
                tensors[f"{case.id}/{k}"] = v
    return ReferenceRun(tensors, result.calls)
