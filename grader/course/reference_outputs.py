"""The reference's outputs for every case, and every known mistake's: computed once, then cached.

The one place that owns them: the fingerprint that keys the cache, the cache's files, the
public fixtures of a student bundle, and the mistake variants. The reference is code, so it
runs in a worker in the configured sandbox, like any submission (never inside a student's
worker), in ``generate`` mode: it makes the seeded inputs, masks, parameters and loss
weights, and the expected outputs. The cache key covers everything that could change them:
the reference file, the cases file, the worker's code and the torch version.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save, save_file

from grader.config import GradeConfig
from grader.errors import CaseFileError, GraderError, InternalError, UsageError
from grader.memo import by_files
from grader.execute.jobs import Job, call_spec, make_job
from grader.execute.observation import Observation, Tensors, from_saved
from grader.execute.protocol import INPUT_PREFIXES, ProtocolViolation, split_key
from grader.execute.runner import Worker
from grader.execute.sandbox import resolve_mode
from grader.execute.slots import WarmSlot
from grader.judge.diagnose import Variants
from grader.plan.slicing import Statement, parse_units, slice_for
from grader.plan.submission import SourceUnit, read_submission
from grader.course.reference_checks import check_keys, checked_reference
from grader.spec.cases import Assignment
from grader.spec.mistakes import Mistake, load_mistakes, mistakes_file

CACHE_VERSION = "3"  # 3: records keep the module's parameter order
#: Fixture files larger than this are refused when the course is not trusted.
MAX_FIXTURE_BYTES = 256 << 20
#: Seconds the reference (and each mistake variant) may take for all its cases.
REFERENCE_TIMEOUT = 300.0


@dataclass(frozen=True)
class ReferenceOutputs:
    """The reference's observation of each case it ran (in a student bundle: the public ones)."""

    observations: dict[str, Observation]

    def inputs(self, case_ids: set[str] | None = None) -> bytes:
        """What a worker may see of these cases (default: all), as safetensors bytes: inputs,
        parameters, loss weights; no outputs."""
        given = {f"{cid}/{k}": v for cid, o in self.observations.items() for k, v in o.tensors.items()
                 if k.startswith(INPUT_PREFIXES) and (case_ids is None or cid in case_ids)}
        return save(given) if given else b""

    def public(self, assignment: Assignment) -> "ReferenceOutputs":
        """Only the public cases: what a student bundle may contain (inputs and expected outputs)."""
        keep = {c.id for c in assignment.cases if not c.hidden}
        return ReferenceOutputs({k: o for k, o in self.observations.items() if k in keep})

    def save(self, tensors_file: Path, records_file: Path) -> None:
        """Write as files (the cache, or a bundle's fixtures): safetensors + JSON, reproducible bytes."""
        _write(tensors_file, records_file, self.observations)

    @classmethod
    def load(cls, tensors_file: Path, records_file: Path, where: str) -> "ReferenceOutputs":
        """Read files written by ``save``, checked like a worker's records (they may come from anywhere)."""
        return cls(_read(tensors_file, records_file, where))


def fingerprint(assignment: Assignment) -> str:
    """What the reference's outputs depend on: reference, cases, worker code, torch version."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    package = Path(__file__).resolve().parents[1]
    for path in (assignment.reference, assignment.cases_file, package / "execute" / "worker.py",
                 package / "execute" / "protocol.py", package / "execute" / "jobs.py"):
        h.update(path.read_bytes())
    h.update(_torch_version().encode())
    return h.hexdigest()[:20]


@functools.lru_cache(maxsize=1)
def _torch_version() -> str:
    """The installed torch's version (read once: looking it up costs milliseconds)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


def cache_folder(assignment: Assignment, config: GradeConfig) -> Path:
    """Where the reference's cached outputs of ``assignment`` live (``expected.safetensors``, ``records.json``)."""
    return config.cache_dir / assignment.name / fingerprint(assignment)


def variants_folder(assignment: Assignment, config: GradeConfig) -> Path:
    """Where the mistake variants' cached outputs live (keyed by the mistakes file too)."""
    text = mistakes_file(assignment.folder).read_bytes()
    return cache_folder(assignment, config) / ("mistakes-" + hashlib.sha256(text).hexdigest()[:16])


def expected_outputs(assignment: Assignment, config: GradeConfig) -> ReferenceOutputs:
    """The reference's run when this is a trusted course with its reference; else the released fixtures."""
    if assignment.trusted and not assignment.released and assignment.reference.is_file():
        return reference_outputs(assignment, config)
    return load_fixtures(assignment)


def load_fixtures(assignment: Assignment) -> ReferenceOutputs:
    """The public cases' data as released by ``grade release`` (only public cases are taken)."""
    tensors_file, records_file = assignment.fixtures_file, assignment.fixtures_file.with_suffix(".json")
    if not (tensors_file.is_file() and records_file.is_file()):
        if assignment.trusted and not assignment.released:
            raise InternalError(f"neither the reference ({assignment.reference}) nor the public fixtures "
                                f"({tensors_file}) of {assignment.name} are here; run `grade release` to make them")
        raise UsageError(f"the course folder {assignment.folder.parent.parent} has no released fixtures for "
                         f"{assignment.name}; pass --root with the course folder")
    for f in (tensors_file, records_file):
        if not assignment.trusted and f.stat().st_size > MAX_FIXTURE_BYTES:
            raise UsageError(f"{f} is larger than {MAX_FIXTURE_BYTES >> 20} MB: not a released fixture file")
    outputs = ReferenceOutputs.load(tensors_file, records_file, str(records_file))
    return outputs.public(assignment)


def reference_outputs(assignment: Assignment, config: GradeConfig) -> ReferenceOutputs:
    """The reference's run for ``assignment``, from the cache when it is still valid."""
    if not assignment.reference.is_file():
        raise UsageError(f"reference solution {assignment.reference} not found (named by {assignment.cases_file}); "
                         f"grading {assignment.name} needs the course's reference/ folder")
    folder = cache_folder(assignment, config)
    tensors_file, records_file = folder / "expected.safetensors", folder / "records.json"
    if config.use_cache and tensors_file.is_file() and records_file.is_file():
        try:
            cached = ReferenceOutputs.load(tensors_file, records_file, str(records_file))
        except (CaseFileError, UsageError):
            pass  # a damaged cache entry is recomputed
        else:
            check_keys(assignment, cached.observations, lambda: reference_statements(assignment))
            return cached
    statements = reference_statements(assignment)
    job = make_job("generate", statements, "reference", [call_spec(c, assignment) for c in assignment.cases])
    with _worker(config) as worker:
        run = worker.run(job, b"", REFERENCE_TIMEOUT)
    outputs = ReferenceOutputs(checked_reference(assignment, run, statements))
    folder.mkdir(parents=True, exist_ok=True)
    _write(tensors_file, records_file, outputs.observations, atomic=True)
    return outputs


def reference_statements(assignment: Assignment) -> tuple[Statement, ...]:
    """The reference's statements that define the graded classes (a notebook or a .py file)."""
    return _statements(assignment, _reference_units(assignment))


def variant_outputs(assignment: Assignment, expected: ReferenceOutputs, config: GradeConfig) -> Variants:
    """Every known mistake's observations, from the cache or computed: two at a time, each of the two shares
    forked from a warm slot of its own in bubblewrap mode (torch imported twice, not once per mistake),
    else a cold worker per mistake."""
    mistakes = load_mistakes(assignment.folder)
    if not mistakes or not assignment.trusted or not assignment.reference.is_file():
        return {}
    folder = variants_folder(assignment, config)
    runs: Variants = {}
    todo = []
    for m in mistakes:
        t, r = folder / f"{m.id}.safetensors", folder / f"{m.id}.json"
        try:
            if config.use_cache and t.is_file() and r.is_file():
                runs[m.id] = _read(t, r, str(r))
                continue
        except (CaseFileError, UsageError):
            pass
        todo.append(m)
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        units = _reference_units(assignment)
        inputs = expected.inputs()
        # every edit is made and parsed here, before the threads: they only drive workers (see plan/parsing.py)
        jobs = {m.id: _variant_job(assignment, units, m) for m in todo}

        def run_share(share: list[Mistake]) -> list[tuple[Mistake, dict[str, Observation]]]:
            with _variant_workers(config) as new_worker:
                return [(m, _run_variant(jobs[m.id], m, inputs, config, new_worker)) for m in share]

        with ThreadPoolExecutor(max_workers=2) as pool:  # two shares, two at a time
            for share in pool.map(run_share, [todo[0::2], todo[1::2]]):
                for m, observations in share:
                    _write(folder / f"{m.id}.safetensors", folder / f"{m.id}.json", observations, atomic=True)
                    runs[m.id] = observations
    return runs


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


def _variant_job(assignment: Assignment, units: tuple[SourceUnit, ...], mistake: Mistake) -> Job:
    """The worker's job for the reference with ``mistake``'s edits made."""
    edited = apply_edits(units, mistake, str(mistakes_file(assignment.folder)))
    return make_job("run", _statements(assignment, edited, mistake), "variant",
                    [call_spec(c, assignment) for c in assignment.cases])


def _run_variant(job: Job, mistake: Mistake, inputs: bytes, config: GradeConfig,
                 new_worker: Callable[[], Worker]) -> dict[str, Observation]:
    with new_worker() as worker:
        run = worker.run(job, inputs, REFERENCE_TIMEOUT, config.case_timeout)
    if run.internal or run.start_failure:
        raise InternalError(f"the worker failed on mistake {mistake.id!r}: {run.internal or run.start_failure}")
    return run.observations


@contextlib.contextmanager
def _variant_workers(config: GradeConfig) -> Iterator[Callable[[], Worker]]:
    """Where one share of the mistakes runs: workers forked from a warm slot of its own in bubblewrap mode
    (torch imported once for the share, not once per mistake), else a cold worker each."""
    if resolve_mode(config.sandbox) == "bwrap":
        with WarmSlot("bwrap", config.limits, (config.cache_dir,)) as slot:
            yield slot.new_worker
    else:
        yield functools.partial(_worker, config)


def _worker(config: GradeConfig) -> Worker:
    """A worker for the course's own code, in the configured sandbox, seeing nothing of the course."""
    return Worker(resolve_mode(config.sandbox), config.limits, (config.cache_dir,))


def _reference_units(assignment: Assignment) -> tuple[SourceUnit, ...]:
    try:
        return read_submission(assignment.reference).units
    except GraderError as e:
        raise CaseFileError(str(assignment.reference), "file", f"the reference cannot be read: {e}") from None


def _statements(assignment: Assignment, units: tuple[SourceUnit, ...], mistake: Mistake | None = None
                ) -> tuple[Statement, ...]:
    """The statements the graded classes need; a class the reference (or a mistake's edit) lacks is the course's error."""
    parsed = parse_units(units)
    sliced = slice_for(parsed, assignment.classes)
    if sliced.missing:
        name = sliced.missing[0]
        broken = parsed.defining_error(name)
        why = (f" ({broken.unit.label}, line {broken.lineno}, does not parse: {broken.message})"
               if broken is not None else "")
        if mistake is not None:
            raise CaseFileError(str(mistakes_file(assignment.folder)), f"mistake {mistake.id!r}",
                                f"edits: the edited reference defines no class {name}{why}; "
                                "an edit must keep the graded classes intact")
        raise CaseFileError(str(assignment.cases_file), f"[targets.{name}]",
                            f"{assignment.reference} defines no class {name}{why}; "
                            + ("fix the reference" if broken is not None else
                               "declare only the classes the reference defines, or add the class to the reference"))
    return sliced.statements


def _write(tensors_file: Path, records_file: Path, observations: dict[str, Observation], atomic: bool = False) -> None:
    tensors = {f"{cid}/{k}": v for cid, o in observations.items() for k, v in o.tensors.items()}
    # Not sorted: a record's params keep the module's order, which orders the gradient problems.
    records = json.dumps({cid: o.record() for cid, o in observations.items()}, indent=1) + "\n"
    if not atomic:
        save_file(tensors, str(tensors_file))
        records_file.write_text(records)
        return
    tmp_t, tmp_r = (p.with_name(f".{p.name}.{os.getpid()}") for p in (tensors_file, records_file))
    save_file(tensors, str(tmp_t))
    tmp_r.write_text(records)
    os.replace(tmp_t, tensors_file)  # atomic: a concurrent grader sees old or new, never half
    os.replace(tmp_r, records_file)


def _read(tensors_file: Path, records_file: Path, where: str) -> dict[str, Observation]:
    """Saved observations, checked; read once per process while both files stay the same (``grader.memo``)."""
    return dict(by_files(("observations", str(tensors_file), str(records_file), where), (tensors_file, records_file),
                         lambda: _read_files(tensors_file, records_file, where)))


def _read_files(tensors_file: Path, records_file: Path, where: str) -> dict[str, Observation]:
    try:
        tensors = load_file(str(tensors_file))
        records = json.loads(records_file.read_text(encoding="utf-8"))
    except Exception as e:  # OSError, JSON errors, RecursionError, safetensors' own errors
        raise CaseFileError(where, "file", f"cannot be read: {type(e).__name__}") from None
    if not isinstance(records, dict):
        raise CaseFileError(where, "file", "is not a table of case records")
    by_case: dict[str, Tensors] = {}
    for key, value in tensors.items():
        cid, rest = split_key(key)
        if value.dtype.kind not in "fiub":
            raise CaseFileError(where, key, f"has dtype {value.dtype}")
        by_case.setdefault(cid, {})[rest] = np.asarray(value)
    out = {}
    for cid, record in records.items():
        try:
            out[cid] = from_saved(record, by_case.get(cid, {}))
        except ProtocolViolation as e:
            raise CaseFileError(where, f"case {cid!r}", str(e)) from None
    return out
