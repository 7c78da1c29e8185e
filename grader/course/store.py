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

from grader.execute import protocol
from grader.spec.cases import Assignment
from grader.errors import InternalError
from grader.execute.protocol import INPUT_PREFIXES, call_spec, statement_payload
from grader.errors import GraderError
from grader.execute.runner import Worker, WorkerRun
from grader.plan.slicing import Statement, parse_units, slice_for
from grader.plan.submission import read_submission

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

    def public(self, assignment: Assignment) -> "ReferenceRun":
        """Only the public cases: what a student bundle may contain (inputs and expected outputs)."""
        keep = {c.id for c in assignment.cases if not c.hidden}
        stable = ("id", "status", "phase", "error", "params")  # no paths or timings: fixtures are reproducible
        return ReferenceRun({k: v for k, v in self.tensors.items() if protocol.split_key(k)[0] in keep},
                            {k: {f: r.get(f) for f in stable} for k, r in self.records.items() if k in keep})

    def save(self, tensors_file: Path, records_file: Path) -> None:
        """Write as fixtures (safetensors + JSON)."""
        save_file(self.tensors, str(tensors_file))
        records_file.write_text(json.dumps(self.records, indent=1, sort_keys=True) + "\n")

    def write_inputs(self, path: Path) -> None:
        """Write what a student's worker may see: inputs, parameters, loss weights; no outputs."""
        given = {k: v for k, v in self.tensors.items() if protocol.split_key(k)[1].startswith(INPUT_PREFIXES)}
        save_file(given, str(path))


def fingerprint(assignment: Assignment) -> str:
    """What the reference's outputs depend on: reference, cases, worker code, torch version."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    for path in (assignment.reference, assignment.cases_file, Path(__file__).parents[1] / "execute" / "worker.py",
                 Path(__file__).parents[1] / "execute" / "protocol.py"):
        h.update(path.read_bytes())
    try:
        h.update(importlib.metadata.version("torch").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return h.hexdigest()[:20]


def expected_outputs(assignment: Assignment, cache_dir: Path, use_cache: bool = True) -> ReferenceRun:
    """The reference's run when the reference is here; else the public fixtures (a student bundle)."""
    if assignment.reference.is_file() and not assignment.released:
        return reference_outputs(assignment, cache_dir, use_cache)
    return load_fixtures(assignment)


def load_fixtures(assignment: Assignment) -> ReferenceRun:
    """The public cases' data as released by ``grade release``."""
    tensors_file, records_file = assignment.fixtures_file, assignment.fixtures_file.with_suffix(".json")
    if not (tensors_file.is_file() and records_file.is_file()):
        raise InternalError(f"neither the reference ({assignment.reference}) nor the public fixtures "
                            f"({tensors_file}) of {assignment.name} are here; run `grade release` to make them")
    return ReferenceRun(load_file(str(tensors_file)), json.loads(records_file.read_text()))


def reference_outputs(assignment: Assignment, cache_dir: Path, use_cache: bool = True,
                      timeout: float = 300.0) -> ReferenceRun:
    """The reference's run for ``assignment``, from the cache when it is still valid."""
    if not assignment.reference.is_file():
        raise InternalError(f"reference solution {assignment.reference} not found; grading "
                            f"{assignment.name} needs the course's reference/ folder")
    folder = cache_dir / assignment.name / fingerprint(assignment)
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


def reference_statements(assignment: Assignment) -> tuple[Statement, ...]:
    """The reference's statements that define the graded classes (a notebook or a .py file)."""
    try:
        submission = read_submission(assignment.reference)
    except GraderError as e:
        raise InternalError(f"reference {assignment.reference} cannot be read: {e}") from None
    parsed = parse_units(submission.units)
    sliced = slice_for(parsed, assignment.classes)
    if sliced.missing:
        raise InternalError(f"reference {assignment.reference}: " + "; ".join(d for _, d in sliced.missing.values()))
    return sliced.statements


def _run_reference(assignment: Assignment, timeout: float) -> ReferenceRun:
    job = {"mode": "generate", "calls": [call_spec(c, assignment) for c in assignment.cases],
           **statement_payload(reference_statements(assignment), "reference")}
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
