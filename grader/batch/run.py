"""``grade batch``: grade every submission of a source into one store, then write the outputs.

    hold OUT, open its store                            before anything else under OUT is touched
                                                        (outdir.py; a foreign grades.sqlite refused unread-only)
    collected = collect(SOURCE)                         one submission per student (sources.py); a zip into
                                                        OUT/extracted, removed first only if a batch made it
    reference + mistake variants, once                  before any submission runs
    -j grading processes, each with a warm slot         workers.py; torch imported once per slot
    similarity flags, beside the grading                 similarity.py
    for each submission: its bytes read once, hashed,   outdir.Copies: what is graded is what is hashed
    and copied to a private folder
    for each one not done yet (store.done):             content-hashed: a changed file is regraded
        its copy graded in a free process (a forked     pipeline.grade_submission; entry + feedback made there
        worker), its report naming the student's file
        store.put(...), its feedback written            one transaction as each finishes
    gradebook.csv, gradebook_points.csv, canvas_import.csv, feedback/<student>.{html,json,txt},
    class.html and class.txt (the class at a glance: insights.py, class_page.py), similarity.csv (similarity.py)

Nothing is lost if the machine dies: every finished submission is in the store, and the same
command resumes, grading only what is missing. The outputs are written from the store alone
(a submission graded now has its feedback rendered from its report exactly as the store reads
it back), so a resumed batch writes exactly what an uninterrupted one would. A submission's own crash,
hang or attack is its result; only the grader's own failure is ``internal``, listed, and
graded again by the next run.

Each slot is a zygote with torch imported, inside the sandbox; every submission runs in a
fresh process forked from it, and everything a submission leaves is gone before the next
(``grader.execute.slots``). Without bubblewrap (or with ``warm=False``) every submission
starts a cold worker and pays the torch import (about a second).
"""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.batch.gradebook import CanvasNames, columns_from_cases, write_gradebooks, write_whole
from grader.batch.class_page import summary_html, summary_text
from grader.batch.insights import WorkersUsed, class_summary
from grader.batch.similarity import Flag, flags_for_files
from grader.batch.sources import Collected, StudentFile, collect
from grader.batch.walk import SourceLimits, Skipped
from grader.batch import outdir, workers
from grader.batch.feedback import feedback_texts, notebook_page, write_texts
from grader.batch.store import STORE_NAME, Handed, Store, StoredResult
from grader.config import GradeConfig
from grader.course.assignments import get_assignment
from grader.course.resolve import resolve_course
from grader.course.reference_outputs import expected_outputs, fingerprint, variant_outputs
from grader.errors import UsageError
from grader.execute.sandbox import not_requested_reason, resolve_mode
from grader.execute.slots import SlotTally
from grader.model.text import safe_text, spreadsheet_safe
from grader.spec.mistakes import load_mistakes, mistakes_file

#: The outputs' names under the batch's out folder (the store's: ``STORE_NAME``).
STORE_FILE = STORE_NAME
FEEDBACK = "feedback"
CLASS_PAGE, CLASS_TEXT, SIMILARITY = "class.html", "class.txt", "similarity.csv"


@dataclass(frozen=True)
class BatchOptions:
    """How a batch grades, besides what and where (``run_batch``'s ``source``, assignment and ``out``).

    ``jobs``: grading processes at once. ``regrade``: grade every submission again; ``student``: only
    that student's, again. ``identity`` and ``layout``: how the source is read (``sources.collect``).
    ``warm=False``: a cold worker per submission even where warm slots could run. ``scheduler``: grade
    on the Dask cluster of that scheduler (``grader.batch.cluster``; ``chunk_size`` submissions per task,
    default: chosen from the class and the cluster's size) instead of in local processes;
    ``allow_unsandboxed_workers``: let its workers without bubblewrap grade, where their submissions get
    no network (``cluster.refusal``). ``canvas``: how ``canvas_import.csv`` names the assignment's column
    and the students, as Canvas does."""

    jobs: int = 1
    regrade: bool = False
    student: str | None = None
    identity: str | None = None
    layout: str = "auto"
    warm: bool = True
    scheduler: str | None = None
    chunk_size: int | None = None
    allow_unsandboxed_workers: bool = False
    canvas: CanvasNames | None = None


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: the submissions graded now, skipped as done, failed in the grader."""

    collected: Collected
    graded: tuple[str, ...]
    already_done: tuple[str, ...]
    internal: tuple[StoredResult, ...]
    outputs: tuple[Path, ...]
    #: how many warm slots graded (0: a cold worker per submission)
    slots: int = 0
    #: CPU seconds the warm slots' forked workers used (0.0 with cold workers or on a cluster: not measured)
    worker_cpu: float = 0.0
    #: with ``scheduler``: the Dask workers as checked at the start (``cluster.WorkerFacts``)
    cluster: tuple = ()
    #: how this run's submissions were run, as it happened (warm slots, cold fallbacks, and why)
    workers: WorkersUsed = WorkersUsed(0, 0)
    #: the class at a glance, as class.txt holds it
    summary: str = ""
    #: the pairs of students with alike code (None: not computed, copydetect is missing)
    flags: tuple[Flag, ...] | None = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while grading, with what the store holds once the grading stopped (read from the
    store itself, so a result stored just as the signal came is counted)."""

    def __init__(self, graded_now: int, in_store: int, total: int) -> None:
        super().__init__(graded_now, in_store, total)
        #: results this run stored; of the submissions chosen, how many are done; how many were chosen
        self.graded_now, self.in_store, self.total = graded_now, in_store, total


#: Called as each submission finishes: (student id, its stored result, how many are done, total).
Progress = Callable[[str, StoredResult, int, int], None]


def run_batch(source: Path, assignment_name: str, out: Path, config: GradeConfig,
              options: BatchOptions = BatchOptions(), progress: Progress | None = None) -> BatchResult:
    """Grade ``source`` into ``out`` as ``options`` say (see the module docstring); resumable;
    ``progress`` is called as each submission is stored.

    Another batch using ``out``, a ``grades.sqlite`` there that is not a results store, an
    ``extracted`` there that no batch made: ``UsageError``, before anything of theirs is changed."""
    course = resolve_course(config.root)
    assignment = get_assignment(course, assignment_name)
    config = dataclasses.replace(config, assignment=assignment.name, root=course.root)
    with outdir.hold(out), Store.open(out / STORE_FILE) as store:
        is_zip = source.is_file() and zipfile.is_zipfile(source)
        collected = collect(source, extract_to=outdir.extraction_folder(out) if is_zip else None,
                            layout=options.layout, identity=options.identity)
        student = options.student
        chosen = [s for s in collected.submissions if student is None or s.student_id == student]
        if student is not None and not chosen:
            why = dict(not_graded(collected)).get(student)
            raise UsageError(f"no submission of student {student!r} in {source}" + (f": {why}" if why else ""))
        key = grading_key(assignment)
        reference = expected_outputs(assignment, config)  # once for the batch, before any submission runs
        if load_mistakes(assignment.folder):
            variant_outputs(assignment, reference, config)
        if options.regrade or student is not None:
            for s in chosen:
                store.forget(student_id=s.student_id, grading_key=key)
        copies = outdir.Copies(out, SourceLimits().max_file_bytes)
        try:
            return _grade(collected, chosen, store, key, copies, assignment, config, course.root, source, out,
                          options, progress)
        finally:
            copies.remove()


def _grade(collected: Collected, chosen: list, store: Store, key: str, copies: outdir.Copies, assignment,
           config: GradeConfig, course_root: Path, source: Path, out: Path, options: BatchOptions,
           progress: Progress | None) -> BatchResult:
    """The grading and the outputs of ``run_batch``, holding ``out``."""
    warm, scheduler = options.warm, options.scheduler
    todo, done, unread = [], [], []
    pages: dict[str, Path] = {}  # student -> the copy a notebook page missing from their feedback is drawn from
    for s in chosen:  # each file read once: the hash stored is the hash of the bytes graded
        copy = copies.take(s.path)
        if isinstance(copy, str):
            unread.append(Skipped(s.path, copy, s.student_id))
        elif store.done(s.student_id, copy.sha, key):
            if notebook_page(out / FEEDBACK, s.student_id).exists():
                copies.drop(copy)
            else:  # graded by a run stopped before its feedback, or by a grader that drew no such page
                pages[s.student_id] = copy.path
            done.append((s, copy.sha))
        else:
            todo.append((s, copy))
    # a file done may have been handed in under another name since (late, a resubmission of the same bytes)
    store.note_handed(key, [(s.student_id, sha, handed(s, collected.root)) for s, sha in done])
    if unread:
        gone = {u.student_id for u in unread}
        collected = dataclasses.replace(
            collected, submissions=tuple(s for s in collected.submissions if s.student_id not in gone),
            skipped=tuple(sorted(collected.skipped + tuple(unread), key=lambda x: (str(x.path), x.member or ""))))
    finished = len(done)
    total = len(done) + len(todo)
    flags: Future | None = None
    flags_started = False  # after the first result: the similarity pass does not slow the slots' start

    def start_flags() -> None:
        nonlocal flags, flags_started
        if not flags_started:
            flags, flags_started = _start_flags(assignment, collected), True
    feedback_written: dict[str, list[Path]] = {}  # student -> files, written as each one finishes
    width = max(1, min(options.jobs, len(todo)))
    warm_mode = bool(warm and todo and not scheduler and resolve_mode(config.sandbox) == "bwrap")
    worker_cpu, slots, facts, tally = 0.0, width if warm_mode else 0, (), SlotTally()
    if todo:
        tasks = [workers.Task((s, c.sha), c.path, str(s.path)) for s, c in todo]
        engine: workers.GradingEngine
        if scheduler:
            engine = _cluster().Cluster(scheduler, assignment, config, warm, options.chunk_size,
                                        allow_unsandboxed=options.allow_unsandboxed_workers)
            try:
                facts = engine.check()
            except BaseException:
                engine.close()
                raise
            slots = sum(w.threads for w in facts if w.sandbox == "bwrap") if warm else 0

        else:
            hide = (course_root, config.cache_dir, source.resolve(), out.resolve())
            engine = workers.Pool(width, warm_mode, config.limits, hide, str(course_root))
        mark = store.last_id()
        try:
            with engine:
                for (s, sha), graded in engine.grade_all(tasks, config):
                    stored = store.put(s.student_id, s.name or "", sha, key, graded.entry, graded.seconds,
                                       handed(s, collected.root))
                    feedback_written[s.student_id] = write_texts(out / FEEDBACK, s.student_id, graded.feedback)
                    worker_cpu += graded.worker_cpu
                    if graded.slot is not None:
                        tally += graded.slot
                    finished += 1
                    start_flags()
                    if progress is not None:
                        progress(s.student_id, stored, finished, total)
        except KeyboardInterrupt:  # the engine is closed: nothing more reaches the store
            chosen_now = [(s.student_id, sha) for s, sha in done] + [(s.student_id, c.sha) for s, c in todo]
            raise Interrupted(store.recorded_since(mark), sum(store.done(i, sha, key) for i, sha in chosen_now),
                              total) from None
    start_flags()
    rows = [r for r in store.results(key) if r.student_id in {s.student_id for s in collected.submissions}]
    columns = columns_from_cases(assignment.cases)
    outputs = write_gradebooks(out, rows, columns, assignment.name, names=options.canvas)
    outputs += write_feedback(out / FEEDBACK, [r for r in rows if r.student_id not in feedback_written], pages)
    outputs += [p for r in rows for p in feedback_written.get(r.student_id, ())]
    found = flags.result() if flags is not None else None
    if found is not None:
        outputs.append(write_whole(out / SIMILARITY, similarity_csv(found)))
    summary = class_summary(rows, columns, mistakes={m.id: m for m in load_mistakes(assignment.folder)})
    used = WorkersUsed(len(todo), slots, tally, "" if slots or scheduler else _cold_why(warm, config))
    missing = not_graded(collected)
    text = summary_text(summary, used, missing, found)
    outputs += [write_whole(out / CLASS_PAGE, summary_html(summary, assignment.name, missing, found)),
                write_whole(out / CLASS_TEXT, text)]
    internal = tuple(r for r in rows if r.status == "internal")
    return BatchResult(collected, tuple(s.student_id for s, _ in todo), tuple(s.student_id for s, _ in done),
                       internal, tuple(outputs), slots, worker_cpu, facts, used, text,
                       tuple(found) if found is not None else None)


def handed(s: StudentFile, root: Path) -> Handed:
    """What the student handed in, as the store keeps it: files named as in the source's folder."""
    def name(p: Path) -> str:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return p.name
    return Handed(name(s.path), s.late, s.resubmission, tuple(name(p) for p in s.others))


def not_graded(collected: Collected) -> tuple[tuple[str, str], ...]:
    """The students the source names who have no submission, and why, by student id: each one claimed by
    several entries (``conflicts``), and each whose every entry was skipped (too many files, only empty
    files, a file gone when its turn came, ...)."""
    graded = {s.student_id for s in collected.submissions}
    why: dict[str, list[str]] = {c.student_id: [c.reason] for c in collected.conflicts}
    conflicted = set(why)
    for k in collected.skipped:
        if k.student_id is not None and k.student_id not in graded and k.student_id not in conflicted:
            why.setdefault(k.student_id, []).append(f"{k.path.name}: {k.reason}")
    return tuple((sid, "; ".join(reasons)) for sid, reasons in sorted(why.items()))


def _cold_why(warm: bool, config: GradeConfig) -> str:
    """Why a local batch ran a cold worker per submission."""
    if not warm:
        return "--cold was asked for"
    return f"{not_requested_reason() or '--sandbox none was asked for'} (warm slots need the bubblewrap sandbox)"


def _cluster():
    """``grader.batch.cluster``, imported only for ``--scheduler`` (it imports Dask)."""
    try:
        from grader.batch import cluster
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("dask", "distributed"):
            raise UsageError("--scheduler grades on a Dask cluster, which needs Dask here: "
                             "pip install 'grader[dask]' (from a checkout: pip install -e '.[dask]')") from None
        raise
    return cluster


def _start_flags(assignment, collected: Collected) -> Future | None:
    """Start computing the similarity flags in a thread, beside the grading (they need only the files;
    the grading happens in other processes); None without copydetect (``pip install -e '.[batch]'``)."""
    import importlib.util

    if importlib.util.find_spec("copydetect") is None:
        return None
    template = assignment.folder / f"{assignment.name}.ipynb"
    paths = {s.student_id: str(s.path) for s in collected.submissions}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="similarity")
    try:
        return pool.submit(flags_for_files, paths, list(assignment.classes), str(template) if template.is_file() else None)
    finally:
        pool.shutdown(wait=False)


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


def write_feedback(folder: Path, rows: list[StoredResult], sources: dict[str, Path] | None = None) -> list[Path]:
    """Each stored student's feedback files (``grader.batch.feedback``), with the notebook page of those
    whose graded bytes ``sources`` holds (the others' pages, drawn when they were graded, stay)."""
    sources = sources or {}
    return [p for r in rows if r.report is not None
            for p in write_texts(folder, r.student_id, feedback_texts(r.report, sources.get(r.student_id)))]
