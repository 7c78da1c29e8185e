"""``grade batch``: grade every submission of a source into one store, then write the outputs.

    collected = collect(SOURCE)                         one submission per student (sources.py)
    reference + mistake variants, once                  before any submission runs
    for each submission not done yet (store.done):      content-hashed: a changed file is regraded
        grade it (its own sandboxed worker, -j at once) pipeline.grade_submission
        store.record(...)                               one transaction as each finishes
    gradebook.csv, gradebook_points.csv, canvas_import.csv, feedback/<student>.{html,json,txt},
    class.html and class.txt (the class at a glance: insights.py), similarity.csv (similarity.py)

Nothing is lost if the machine dies: every finished submission is in the store, and the same
command resumes, grading only what is missing. The outputs are written from the store alone,
so a resumed batch writes exactly what an uninterrupted one would. A submission's own crash,
hang or attack is its result; only the grader's own failure is ``internal``, listed, and
graded again by the next run.

Each submission still pays for its worker's ``import torch`` (about a second); a warm worker
per slot is the next step (issue 11's speed item).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.batch.gradebook import columns_from_cases, write_gradebooks, write_whole
from grader.batch.insights import class_summary, summary_html, summary_text
from grader.batch.similarity import Flag, graded_code, similarity_flags, template_code
from grader.batch.sources import Collected, Submission, collect
from grader.batch.store import Store, StoredResult
from grader.config import GradeConfig
from grader.course.assignments import get_assignment
from grader.course.resolve import resolve_course
from grader.course.store import expected_outputs, fingerprint, variant_outputs
from grader.errors import UsageError
from grader.pipeline import grade_submission
from grader.report.audience import for_audience
from grader.report.render import render, render_rich_text
from grader.report.result import Report
from grader.report.text import safe_text, spreadsheet_safe
from grader.spec.mistakes import load_mistakes, mistakes_file

#: The store's file under the batch's out folder, and the other outputs' names.
STORE_FILE = "grades.sqlite"
FEEDBACK = "feedback"
CLASS_PAGE, CLASS_TEXT, SIMILARITY = "class.html", "class.txt", "similarity.csv"


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: the submissions graded now, skipped as done, failed in the grader."""

    collected: Collected
    graded: tuple[str, ...]
    already_done: tuple[str, ...]
    internal: tuple[StoredResult, ...]
    outputs: tuple[Path, ...]


#: Called as each submission finishes: (student id, its stored result, how many are done, total).
Progress = Callable[[str, StoredResult, int, int], None]


def run_batch(source: Path, assignment_name: str, out: Path, config: GradeConfig, jobs: int = 1,
              regrade: bool = False, student: str | None = None, identity: str | None = None,
              layout: str = "auto", progress: Progress | None = None) -> BatchResult:
    """Grade ``source`` into ``out`` (see the module docstring); resumable."""
    out.mkdir(parents=True, exist_ok=True)
    course = resolve_course(config.root)
    assignment = get_assignment(course, assignment_name)
    config = dataclasses.replace(config, assignment=assignment.name, root=course.root)
    extracted = out / "extracted"  # a zip's files, extracted afresh by every run (the store keys on content)
    if extracted.is_dir() and not extracted.is_symlink():
        shutil.rmtree(extracted)
    collected = collect(source, extract_to=extracted, layout=layout, identity=identity)
    chosen = [s for s in collected.submissions if student is None or s.student_id == student]
    if student is not None and not chosen:
        raise UsageError(f"no submission of student {student!r} in {source}")
    key = grading_key(assignment)
    reference = expected_outputs(assignment, config)  # once for the batch, before any submission runs
    if load_mistakes(assignment.folder):
        variant_outputs(assignment, reference, config)
    with Store.open(out / STORE_FILE) as store:
        if regrade or student is not None:
            for s in chosen:
                store.forget(student_id=s.student_id, grading_key=key)
        todo, done = [], []
        for s in chosen:
            sha = file_sha(s.path)
            (done if store.done(s.student_id, sha, key) else todo).append((s, sha))
        finished = len(done)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures: dict[Future, tuple[Submission, str]] = {
                pool.submit(_graded, s.path, config): (s, sha) for s, sha in todo}
            for future in as_completed(futures):
                s, sha = futures[future]
                stored = _record(store, s, sha, key, future)
                finished += 1
                if progress is not None:
                    progress(s.student_id, stored, finished, len(chosen))
        rows = [r for r in store.results(key) if r.student_id in {s.student_id for s in collected.submissions}]
        columns = columns_from_cases(assignment.cases)
        outputs = write_gradebooks(out, rows, columns, assignment.name)
        outputs += write_feedback(out / FEEDBACK, rows)
        flags = _flags(assignment, collected)
        if flags is not None:
            outputs.append(write_whole(out / SIMILARITY, similarity_csv(flags)))
        summary = class_summary(rows, columns)
        outputs += [write_whole(out / CLASS_PAGE, summary_html(summary, assignment.name)),
                    write_whole(out / CLASS_TEXT, summary_text(summary))]
        internal = tuple(r for r in rows if r.status == "internal")
    return BatchResult(collected, tuple(s.student_id for s, _ in todo), tuple(s.student_id for s, _ in done),
                       internal, tuple(outputs))


def _graded(path: Path, config: GradeConfig) -> tuple[Report | BaseException, float]:
    """One submission graded, and how long that took (from when it started, not when it was queued)."""
    start = time.perf_counter()
    try:
        return grade_submission(path, config), time.perf_counter() - start
    except Exception as e:  # recorded by the parent's loop as the grader's own failure
        return e, time.perf_counter() - start


def _record(store: Store, s: Submission, sha: str, key: str, future: Future) -> StoredResult:
    """One submission's result into the store: its report, or the grader's own failure (listed, and
    graded again by the next run)."""
    report, seconds = future.result()
    if isinstance(report, BaseException):
        e = report
        return store.record(s.student_id, s.name or "", sha, key, None, "internal", seconds,
                            f"{type(e).__name__}: {e}")
    return store.record(s.student_id, s.name or "", sha, key, report, None, seconds)


def _flags(assignment, collected: Collected) -> list[Flag] | None:
    """Pairs of students whose graded code is alike, the template's code left out (computed here);
    None without copydetect (``pip install -e '.[batch]'``)."""
    import importlib.util

    if importlib.util.find_spec("copydetect") is None:
        return None
    classes = list(assignment.classes)
    codes = {s.student_id: graded_code(s.path, classes) for s in collected.submissions}
    template = assignment.folder / f"{assignment.name}.ipynb"
    return similarity_flags(codes, template_code(template, classes) if template.is_file() else "")


def similarity_csv(flags: list[Flag]) -> str:
    """student_a, student_b, and each one's share of code found in the other's; ids made safe for spreadsheets."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("student_a", "student_b", "similarity_a", "similarity_b"))
    for f in flags:
        writer.writerow((spreadsheet_safe(safe_text(f.student_a, one_line=True)),
                         spreadsheet_safe(safe_text(f.student_b, one_line=True)),
                         f"{f.similarity_a:.3f}", f"{f.similarity_b:.3f}"))
    return buf.getvalue()


def grading_key(assignment) -> str:
    """What decides a grade besides the submission: the reference's fingerprint (reference, case
    file, worker, torch), the known mistakes, and the grader's version."""
    import importlib.metadata

    h = hashlib.sha256(fingerprint(assignment).encode())
    path = mistakes_file(assignment.folder)
    if path.is_file():
        h.update(path.read_bytes())
    try:
        h.update(importlib.metadata.version("grader").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return f"{assignment.name}:{h.hexdigest()[:20]}"


def file_sha(path: Path) -> str:
    """The sha256 of a submission file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


def feedback_name(student_id: str) -> str:
    """A file name for a student's feedback: their id with anything unusual replaced, and a short hash
    of the id so two ids never share a file."""
    safe = _UNSAFE_NAME.sub("_", student_id)[:80].lstrip(".") or "student"
    return f"{safe}-{hashlib.sha256(student_id.encode()).hexdigest()[:8]}"


def write_feedback(folder: Path, rows: list[StoredResult]) -> list[Path]:
    """Each student's feedback, for the student (hidden cases by name, points and result only):
    an HTML page, Gradescope JSON and text."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in rows:
        if r.report is None:
            continue
        report = for_audience(r.report, "student")
        base = feedback_name(r.student_id)
        for suffix, text in ((".html", render(report, "html")), (".json", render(report, "gradescope")),
                             (".txt", render_rich_text(report, width=100))):
            written.append(write_whole(folder / (base + suffix), text))
    return written
