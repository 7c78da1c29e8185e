"""Known mistakes: small variants of the reference, run like submissions, that name a bug.

``assignments/<name>/mistakes.toml`` declares each mistake as edits of the reference's code
(exact text, replaced a known number of times). The grader runs every variant once on the
reference's inputs and parameters (cached beside the reference's outputs). When a case fails
and the student's outputs match a variant's (and the variant differs from the reference in
that case), the report names the mistake and its hint.
"""
from __future__ import annotations

import hashlib
import json
import os
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from grader.spec.cases import Assignment, Case
from grader.errors import CaseFileError, InternalError
from grader.execute.protocol import call_spec, statement_payload
from grader.plan.submission import SourceUnit

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class Mistake:
    """One known mistake: a name students understand, a hint, and how to make it."""

    id: str
    name: str
    hint: str
    edits: tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class VariantRun:
    """A mistake's outputs for every case: call records and tensors keyed ``case-id/kind/name``."""

    records: dict[str, dict[str, Any]]
    tensors: Tensors

    def for_case(self, case_id: str) -> tuple[dict[str, Any] | None, Tensors]:
        prefix = case_id + "/"
        return self.records.get(case_id), {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def load_mistakes(folder: Path) -> list[Mistake]:
    """The assignment's known mistakes (none without a mistakes.toml)."""
    path = folder / "mistakes.toml"
    if not path.is_file():
        return []
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CaseFileError(where, "file", f"not valid TOML: {e}") from None
    mistakes, seen = [], set()
    for i, raw in enumerate(data.get("mistakes", []), start=1):
        ctx = f"mistake {raw.get('id', f'#{i}')!r}"
        unknown = set(raw) - {"id", "name", "hint", "edits"}
        if unknown:
            raise CaseFileError(where, ctx, f"unknown keys {sorted(unknown)}; allowed: id, name, hint, edits")
        if not isinstance(raw.get("id"), str) or raw["id"] in seen:
            raise CaseFileError(where, ctx, "needs a unique id")
        seen.add(raw["id"])
        edits = []
        for edit in raw.get("edits", []):
            if set(edit) - {"find", "replace", "count"} or not isinstance(edit.get("find"), str) \
                    or not isinstance(edit.get("replace"), str):
                raise CaseFileError(where, ctx, "each edit is { find = \"...\", replace = \"...\", count = N }")
            edits.append((edit["find"], edit["replace"], int(edit.get("count", 1))))
        if not edits:
            raise CaseFileError(where, ctx, "needs at least one edit")
        mistakes.append(Mistake(raw["id"], str(raw.get("name", raw["id"])), str(raw.get("hint", "")), tuple(edits)))
    return mistakes


def apply_edits(units: tuple[SourceUnit, ...], mistake: Mistake, where: str) -> tuple[SourceUnit, ...]:
    """The reference's units with the mistake's edits made; each must match exactly ``count`` times."""
    units = list(units)
    for find, replace, count in mistake.edits:
        found = sum(u.source.count(find) for u in units)
        if found != count:
            raise CaseFileError(where, f"mistake {mistake.id!r}", f"`{find}` occurs {found} times in the "
                                f"reference, expected {count}; update the edit to the reference's current code")
        units = [SourceUnit(u.index, u.label, u.source.replace(find, replace)) for u in units]
    return tuple(units)


def variant_runs(assignment: Assignment, reference_inputs: Path, fingerprint: str, cache_dir: Path,
                 use_cache: bool = True) -> dict[str, VariantRun]:
    """Every mistake's outputs, from the cache or computed (two workers at a time)."""
    mistakes = load_mistakes(assignment.folder)
    if not mistakes:
        return {}
    text = (assignment.folder / "mistakes.toml").read_bytes()
    folder = cache_dir / assignment.name / fingerprint / ("mistakes-" + hashlib.sha256(text).hexdigest()[:16])
    runs: dict[str, VariantRun] = {}
    todo = []
    for m in mistakes:
        t, r = folder / f"{m.id}.safetensors", folder / f"{m.id}.json"
        if use_cache and t.is_file() and r.is_file():
            runs[m.id] = VariantRun(json.loads(r.read_text()), load_file(str(t)))
        else:
            todo.append(m)
    if todo:
        from grader.plan.submission import read_submission

        folder.mkdir(parents=True, exist_ok=True)
        units = read_submission(assignment.reference).units
        with ThreadPoolExecutor(max_workers=2) as pool:
            for m, run in zip(todo, pool.map(lambda m: _run_variant(assignment, units, m, reference_inputs), todo)):
                tmp_t, tmp_r = folder / f".{m.id}.{os.getpid()}.t", folder / f".{m.id}.{os.getpid()}.r"
                save_file(run.tensors, str(tmp_t))
                tmp_r.write_text(json.dumps(run.records))
                os.replace(tmp_t, folder / f"{m.id}.safetensors")
                os.replace(tmp_r, folder / f"{m.id}.json")
                runs[m.id] = run
    return runs


def _run_variant(assignment: Assignment, reference_units: tuple[SourceUnit, ...], mistake: Mistake,
                 inputs: Path) -> VariantRun:
    from grader.execute.runner import Worker
    from grader.plan.slicing import parse_units, slice_for

    units = apply_edits(reference_units, mistake, str(assignment.folder / "mistakes.toml"))
    sliced = slice_for(parse_units(units), assignment.classes)
    job = {"mode": "run", "inputs_file": str(inputs),
           "calls": [call_spec(c, assignment) for c in assignment.cases],
           **statement_payload(sliced.statements, "variant")}
    with Worker() as worker:
        result = worker.run(job, 120.0, 30.0)
        if result.internal:
            raise InternalError(f"the worker failed on mistake {mistake.id!r}:\n{result.internal}")
        tensors: Tensors = {}
        for cid, record in result.calls.items():
            path = worker.output_file(record)
            if path is not None:
                tensors.update({f"{cid}/{k}": v for k, v in load_file(str(path)).items()})
        records = {cid: {k: r.get(k) for k in ("status", "phase", "error")} for cid, r in result.calls.items()}
    return VariantRun(records, tensors)


def diagnose(case: Case, ref: Tensors, stu: Tensors, stu_record: dict[str, Any] | None,
             variants: dict[str, VariantRun], mistakes: list[Mistake]) -> list[Mistake]:
    """The known mistakes whose outputs the student's match in this case (and the reference's don't)."""
    if stu_record is None:
        return []
    found = []
    for m in mistakes:
        run = variants.get(m.id)
        if run is None:
            continue
        v_record, v = run.for_case(case.id)
        if v_record is None:
            continue
        if v_record["status"] == "error":
            err = v_record.get("error") or {}
            if (stu_record["status"] == "error" and (stu_record.get("error") or {}).get("type") == err.get("type")
                    and stu_record.get("phase") == v_record.get("phase")):
                found.append(m)
            continue
        if stu_record["status"] != "ok" or _same(v, ref, case):
            continue  # the variant can't be told from the reference here
        if _same(v, stu, case):
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
        x, y = x.astype(np.float64), y.astype(np.float64)
        masked = (x <= -1e8) & (y <= -1e8)
        if not np.all(np.isclose(y, x, rtol=case.rtol, atol=case.atol) | masked):
            return False
    return True
