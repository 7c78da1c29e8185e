"""Golden text: every format of a few reports, compared with tests/golden/.

A change of wording or layout shows up here as a diff to review. To accept one, run
``GRADER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and read the diff of
tests/golden/ before committing it.

The numbers come from float32 computations whose last bits change from one CPU to the next
(vector kernels, the order of a sum), so a golden holds on every machine only where numbers are
compared as numbers (``golden_compare``): in the JSON formats, parsed floats within a relative
tolerance; in a text, each number within one unit of its last printed digit. Every other character
must be the same. The last sections prove it: reports whose every float moved in its last digits, graded
while the grader's own process is told other thread counts, or in a warm slot that filled its own
cache, all match the goldens; and every worker, cold or forked, computes with one thread.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, course, require_bwrap
from golden_compare import differences, same_number, text_differences
from golden_reports import GRADED, SAMPLE, STUDENT_VIEWS, normalised
from grader import GradeConfig, grade_submission, pipeline
from grader.course import reference_outputs
from grader.course.assignments import get_assignment
from grader.execute.observation import Observation
from grader.execute.protocol import OUTPUT_PREFIXES, CallSpec, Job, StatementSpec
from grader.execute.runner import Worker
from grader.execute.sandbox import resolve_mode
from grader.execute.execution import run_cases
from grader.execute.slots import WarmSlot
from grader.report.audience import for_audience
from grader.report.formats import FROM_SOURCE
from grader.report.render import FORMATS as ALL_FORMATS, render, render_rich_text

#: The pinned formats: a notebook page is nbconvert's and pygments' markup around the submission's cells,
#: which their versions change; tests/test_notebook.py checks it by what it shows instead.
FORMATS = tuple(f for f in ALL_FORMATS if f not in FROM_SOURCE)
from grader.spec.mistakes import load_mistakes

GOLDEN = Path(__file__).parent / "golden"
EXTENSIONS = {"rich": "txt", "json": "json", "gradescope": "gradescope.json", "junit": "xml", "csv": "csv",
              "html": "html"}
UPDATE = os.environ.get("GRADER_UPDATE_GOLDEN") == "1"
#: The terminal report is pinned at the width it must read well at.
WIDTH = 80


# --------------------------------------------------------------------------- comparing


def _text(report, fmt: str) -> str:
    if fmt == "rich":
        return render_rich_text(report, width=WIDTH)
    if fmt == "json":  # the facts' floats at full precision: written to 6 digits, so the file does not churn
        return json.dumps(_rounded(json.loads(render(report, fmt))), indent=2, ensure_ascii=False) + "\n"
    return render(report, fmt)


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def _compare(name: str, report) -> None:
    for fmt in FORMATS:
        path = GOLDEN / f"{name}.{EXTENSIONS[fmt]}"
        text = _text(report, fmt)
        if UPDATE:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            continue
        assert path.is_file(), f"{path} is missing; run GRADER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py"
        golden = path.read_text(encoding="utf-8")
        found = differences(golden, text, fmt)
        assert not found, _failure(path, golden, text, found)


def _failure(path: Path, golden: str, text: str, found: list[str]) -> str:
    diff = "".join(difflib.unified_diff(golden.splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"tests/golden/{path.name}", "rendered now", n=2))
    shown = "\n".join(f"  {d}" for d in found[:10]) + (f"\n  … {len(found) - 10} more" if len(found) > 10 else "")
    return (f"{path.name} differs from its golden text beyond the last printed digits:\n{shown}\n"
            f"To accept the change: GRADER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py, then review "
            f"the diff of tests/golden/.\n{diff}")


# --------------------------------------------------------------------------- the goldens


def test_sample_report_in_every_format():
    _compare("sample", SAMPLE)
    _compare("sample.student", for_audience(SAMPLE, "student"))


#: submission name -> what the pipeline read and ran for it: {"expected": ReferenceOutputs, "execution": Execution}
_RUNS: dict[str, dict[str, Any]] = {}


def _kept(function, kept: dict[str, Any], key: str):
    def call(*args: Any) -> Any:
        kept[key] = function(*args)
        return kept[key]
    return call


@pytest.fixture(scope="module")
def graded():
    """The real submissions graded by cold workers, against the session's reference cache (which only
    cold workers fill); what the pipeline read and ran for each is kept, for ``_replayed``."""
    reports = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, path in GRADED.items():
            kept = _RUNS[name] = {}
            mp.setattr(pipeline, "expected_outputs", _kept(reference_outputs.expected_outputs, kept, "expected"))
            mp.setattr(pipeline, "run_cases", _kept(run_cases, kept, "execution"))
            reports[name] = normalised(grade_submission(ROOT / path), path)
    return reports


@pytest.mark.parametrize("name", sorted(GRADED))
def test_graded_report_in_every_format(graded, name):
    _compare(name, graded[name])


@pytest.mark.parametrize("name", STUDENT_VIEWS)
def test_students_view_in_every_format(graded, name):
    _compare(f"{name}.student", for_audience(graded[name], "student"))


@pytest.mark.parametrize("name", sorted(GRADED))
def test_terminal_report_reads_at_80_columns(graded, name):
    report = graded[name]
    text = render_rich_text(report, width=WIDTH)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    table = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["Case"]):]
    for c in report.cases:  # every case's name fits on its row, with its points and result beside it
        short = c.name.split(": ", 1)[-1]
        if len(short) <= 48:
            assert any(short in line and "/" in line for line in table), f"{c.name!r} wraps"


def test_first_thing_read_is_the_wrong_lines_cause(graded):
    """One wrong line (lin_O left out): the first line after the score is that cause, with its fix."""
    lines = render_rich_text(graded["one_wrong_line"], width=WIDTH).splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert body[0] == "What to fix"
    assert body[1].startswith("1. Known mistake: output projection lin_O not applied")
    assert "self.lin_O(x_rsh2)" in " ".join(body[2:4])


def test_a_typo_in_the_constructor_is_read_first_with_its_line(graded):
    lines = render_rich_text(graded["constructor_typo"], width=WIDTH).splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert body[1].startswith("1. TypeError while building RecurrentNeuralNetworkClass")
    assert next(line for line in body if "Where:" in line).startswith(
        "   Where: bug_constructor_typo.py, line 19 (__init__): `self.rnn =")
    assert "Size h0 and c0" not in "\n".join(lines)  # the shape hint is not about a constructor error


# --------------------------------------------------------------------------- the same on every machine


def test_numbers_are_compared_to_their_last_printed_digit():
    assert same_number("0.163", "0.164") and same_number("0.1", "0.09999") and same_number("2", "2.001")
    assert same_number("9.999e-05", "0.0001") and same_number("-1e+09", "-1e+09")
    assert not same_number("0.163", "0.165") and not same_number("0.5865", "0.5923")
    assert not same_number("210", "209") and not same_number("2", "3")  # counts, indices, lines: exact
    assert text_differences("line 19 (x_rsh2): 2.6rem #0969da", "line 19 (x_rsh3): 2.6rem #0969da")
    assert not text_differences("diff 0.163, at [1, 0]. 1e-9", "diff 0.1631, at [1, 0]. 1e-9")


def test_a_changed_word_is_a_difference_in_every_format():
    for fmt in FORMATS:
        golden = (GOLDEN / f"hidden_only.{EXTENSIONS[fmt]}").read_text(encoding="utf-8")
        changed = golden.replace("differs from the reference", "differs from the template", 1)
        assert changed != golden, fmt
        assert differences(golden, changed, fmt), fmt


class _NoWorker:
    """The worker of a replay: nothing runs, the observations are given."""

    def __init__(self, *args: Any) -> None:
        pass

    def __enter__(self) -> "_NoWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _replayed(name: str, change) -> Any:
    """Submission ``name`` graded again from what its real grading read and ran, every observation (the
    reference's and the student's) passed through ``change(observation, reference)``: judged, grouped into
    causes and worded as the grader does, without a worker."""
    kept = _RUNS[name]
    expected, execution = kept["expected"], kept["execution"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "Worker", _NoWorker)
        mp.setattr(pipeline, "_isolation", lambda *args, **kw: "(isolation)")  # what ``normalised`` writes
        mp.setattr(pipeline, "expected_outputs", lambda *args: dataclasses.replace(
            expected, observations={k: change(o, True) for k, o in expected.observations.items()}))
        mp.setattr(pipeline, "run_cases", lambda *args: dataclasses.replace(
            execution, observations={k: change(o, False) for k, o in execution.observations.items()}))
        return normalised(grade_submission(ROOT / GRADED[name]), GRADED[name])


def _moved(o: Observation, factor) -> Observation:
    """``o`` with every float of its outputs and gradients multiplied by ``factor(shape)``."""
    with np.errstate(all="ignore"):
        tensors = {k: (v * factor(v.shape)).astype(v.dtype) if k.startswith(OUTPUT_PREFIXES) and v.dtype.kind == "f"
                   else v for k, v in o.tensors.items()}
    return dataclasses.replace(o, tensors=tensors)


@pytest.mark.parametrize("how", ["scaled", "jittered"])
def test_goldens_hold_when_every_float_moves_in_its_last_digits(graded, how):
    """As another CPU computes them: every float the reference and the student's code returned, moved by
    3e-7 of itself (2-3 float32 ulps), all alike or each by its own amount, gives reports that match the
    goldens, in every format."""
    if UPDATE:
        pytest.skip("the goldens are being written")
    rng = np.random.default_rng(18)
    factor = (lambda shape: 1 + 3e-7) if how == "scaled" else (lambda shape: 1 + 3e-7 * rng.uniform(-1, 1, shape))
    for name in GRADED:
        report = _replayed(name, lambda o, reference: _moved(o, factor))
        _compare(name, report)
        if name in STUDENT_VIEWS:
            _compare(f"{name}.student", for_audience(report, "student"))


def test_a_number_off_by_one_percent_is_a_difference_in_every_format(graded):
    """Not blind to numbers: the failing case's outputs 1% off (the same words, other numbers) differ from the
    goldens in every format, and only in their numbers."""
    failing = {c.case_id for c in graded["hidden_only"].cases if c.status != "passed"}
    report = _replayed("hidden_only", lambda o, reference: o if reference or o.case_id not in failing
                       else _moved(o, lambda shape: 1.01))
    for fmt in FORMATS:
        found = differences((GOLDEN / f"hidden_only.{EXTENSIONS[fmt]}").read_text(encoding="utf-8"),
                            _text(report, fmt), fmt)
        assert found, fmt
        assert not any("text differs" in d or "keys" in d or "items" in d for d in found), (fmt, found)


# --------------------------------------------------------------------------- whatever the threads, whichever worker

#: What the grader's own process may be told about threads: none of it may reach a worker.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS")


@contextmanager
def _grader_threads(n: int):
    """The grader's own process told to use ``n`` threads: its environment, and torch's settings in it."""
    import torch

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        for var in _THREAD_VARIABLES:
            mp.setenv(var, str(n))
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


@pytest.fixture(scope="module")
def slot():
    """One warm slot, its zygote started while the grader's own process is told to use 3 threads."""
    require_bwrap()
    with _grader_threads(3):
        warm = WarmSlot("bwrap", GradeConfig().limits)
    with warm:
        yield warm
    assert warm.fallbacks == 0, warm.failures


_PROBE = '''
import os
import re

import torch


class Probe(torch.nn.Module):
    def forward(self, x):
        info = torch.__config__.parallel_info()
        found = [re.search(re.escape(k) + r"\\(\\) : (\\d+)", info) for k in {settings!r}]
        return torch.tensor([float(m.group(1)) if m else -1.0 for m in found]
                            + [float(os.environ.get(v, "-1")) for v in {variables!r}])
'''
#: What torch says of its thread pools (``torch.__config__.parallel_info()``): intra-op, inter-op, OpenMP, MKL.
_SETTINGS = ("at::get_num_threads", "at::get_num_interop_threads", "omp_get_max_threads", "mkl_get_max_threads")


def _threads_seen(worker: Worker) -> dict[str, float]:
    """What a worker's code sees of its thread settings (OpenMP's and MKL's where this torch has them)."""
    source = _PROBE.format(settings=_SETTINGS, variables=_THREAD_VARIABLES)
    spec = CallSpec(id="probe", target="Probe", init={}, seed=1, args=["x"], inputs={"x": [1]}, dtypes={}, mask=None,
                    mask_rank=None, key_args=[], call="forward", returns="threads", keys=[], grad=False, loss=[],
                    perturb=False, build_only=False, static_only=False)
    job = Job("generate", uuid.uuid4().hex, [StatementSpec("<probe>", 1, source)],
              {"<probe>": {"label": "probe", "source": source}}, [spec])
    run = worker.run(job, b"", 60)
    observation = run.observations.get("probe")
    assert observation is not None and observation.status == "ok", (run.internal, run.stop, run.stderr)
    seen = dict(zip(_SETTINGS + _THREAD_VARIABLES, observation.tensors["out/threads"].tolist()))
    return {k: v for k, v in seen.items() if not (k in _SETTINGS[2:] and v == -1)}


@pytest.mark.parametrize("kind", ["cold", "warm"])
def test_every_worker_computes_with_one_thread_whatever_the_grader_says(kind, request):
    """A cold worker, and a warm slot's forked one, started while the grader's own process is told to use 3
    threads: one intra-op and one inter-op thread in torch, OpenMP and MKL, and every thread variable at 1."""
    slot = request.getfixturevalue("slot") if kind == "warm" else None
    with _grader_threads(3):
        with (slot.new_worker() if slot else Worker(resolve_mode(None), GradeConfig().limits)) as worker:
            seen = _threads_seen(worker)
    assert seen == dict.fromkeys(seen, 1.0) and len(seen) >= 2 + len(_THREAD_VARIABLES), seen


@pytest.mark.parametrize("threads", [1, 3])
def test_goldens_hold_whatever_threads_the_grader_runs_with(threads):
    """The grader's own thread settings reach no worker, and what it computes itself (numpy, elementwise and
    reductions, no BLAS) does not depend on them: the reports with the most numbers match their goldens."""
    if UPDATE:
        pytest.skip("the goldens are being written")
    with _grader_threads(threads):
        for name in ("hidden_only", "known_mistake"):
            _compare(name, normalised(grade_submission(ROOT / GRADED[name]), GRADED[name]))


def _cache_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_goldens_hold_when_a_warm_slot_fills_the_cache_and_grades(slot, tmp_path):
    """The reference's outputs and the known mistakes', computed by warm slots' forked workers into an empty
    cache (as the grader computes the mistakes in bubblewrap mode), are cold workers' bit for bit; and every submission
    graded in the slot against that cache matches the goldens, as the cold workers' reports do."""
    if UPDATE:
        pytest.skip("the goldens are being written")
    cold, warm = GradeConfig(cache_dir=tmp_path / "cold"), GradeConfig(cache_dir=tmp_path / "cache", sandbox="bwrap")
    lock = threading.Lock()

    @contextmanager
    def forked(config: GradeConfig):  # the reference outputs' worker (the mistakes come two threads at a time): the slot's
        with lock, slot.new_worker() as worker:
            yield worker

    @contextmanager
    def cold_workers(config: GradeConfig):  # the mistakes as a grader without warm slots computes them
        yield lambda: reference_outputs._worker(config)

    variant_forks = []

    class CountedSlot(reference_outputs.WarmSlot):  # the slots reference_outputs starts for the mistakes
        def close(self) -> None:
            variant_forks.append(self.forks)
            super().close()

    for name in ("mha", "lstm"):
        assignment = get_assignment(course(), name)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reference_outputs, "_variant_workers", cold_workers)
            reference_outputs.variant_outputs(assignment, reference_outputs.expected_outputs(assignment, cold), cold)
        forks, variant_forks[:] = slot.forks, []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reference_outputs, "_worker", forked)
            mp.setattr(reference_outputs, "WarmSlot", CountedSlot)
            reference_outputs.variant_outputs(assignment, reference_outputs.expected_outputs(assignment, warm), warm)
        assert slot.forks - forks == 1, "the reference's outputs not computed in the slot"
        assert sum(variant_forks) == len(load_mistakes(assignment.folder)), "not every mistake forked from a slot"
        by_cold, by_slot = (_cache_files(reference_outputs.cache_folder(assignment, c)) for c in (cold, warm))
        assert by_slot and set(by_slot) == set(by_cold), (name, sorted(set(by_slot) ^ set(by_cold)))
        assert [f for f in by_slot if by_cold[f] != by_slot[f]] == [], name
    for name, path in GRADED.items():
        report = normalised(grade_submission(ROOT / path, warm, slot), path)
        _compare(name, report)
        if name in STUDENT_VIEWS:
            _compare(f"{name}.student", for_audience(report, "student"))
