"""A batch's SOURCE (a folder, a zip, an LMS export) turned into the submissions to grade.

``collect`` is the one entry point: it extracts a zip (``grader.batch.unzip``), lists the
folder (``grader.batch.walk``), detects or applies a layout and reads who each entry is
(``grader.batch.layouts``; Gradescope's metadata: ``grader.batch.gradescope_meta``), then
chooses each student's file to grade (``StudentFile``) and lists the rest as ``Skipped``, with
why. Nothing here grades or runs anything: it reads folder listings, file sizes, one byte of
each candidate (to know it is readable) and, for Gradescope, a bounded metadata file. The rules
each layout follows, and the order they are tried in, are in ``docs/batch.md`` ("Sources").

Everything taken from a SOURCE is untrusted: file and folder names, the members of a zip, the
metadata. Student ids and names are plain strings kept as data: they are never used to build a
path or a command here, and whoever shows them or writes them to a CSV makes them safe there
(``grader.model.text``).
"""
from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from grader.batch.layouts import LAYOUTS, Candidate, Conflict, Reader, Student, detect
from grader.batch.unzip import extract_zip
from grader.batch.walk import SourceLimits, Skipped, Walk
from grader.errors import UsageError

#: what a submission may be, best first
EXTENSIONS = (".ipynb", ".py")


@dataclass(frozen=True)
class StudentFile:
    """One student's file to grade, with the other files they handed in (listed, not graded)."""

    student_id: str
    name: str | None
    path: Path
    late: bool = False
    others: tuple[Path, ...] = ()
    email: str | None = None
    #: the other members of a group submission (Gradescope), by id
    group: tuple[str, ...] = ()
    #: which upload of the student's was graded: 0 for the first, N for the LMS's ``-N`` resubmission
    resubmission: int = 0


@dataclass(frozen=True)
class Collected:
    """What ``collect`` found: the layout, the folder it read, submissions by id, what it skipped, and the
    students claimed by more than one entry (``conflicts``, by student id: none of those is graded)."""

    layout: str
    root: Path
    submissions: tuple[StudentFile, ...]
    skipped: tuple[Skipped, ...]
    notes: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def collect(source: str | os.PathLike, *, extract_to: str | os.PathLike | None = None,
            layout: str = "auto", identity: str | re.Pattern | None = None,
            extensions: Iterable[str] = EXTENSIONS, fits: Callable[[Path], bool] | None = None,
            limits: SourceLimits = SourceLimits()) -> Collected:
    """The submissions in ``source``, a folder or a zip (extracted into ``extract_to``).

    ``layout``: "auto" (detected) or one of ``LAYOUTS``. ``identity``: a regular expression with
    a named group ``id`` (and optionally ``name``), searched in each student's file or folder
    name, instead of the layout's own rule. ``extensions``: what a submission may be, best first.
    ``fits``: the caller's test that a file fits the assignment; a file that fits is preferred.
    Raises ``UsageError`` for what the instructor must fix.
    """
    pattern = identity_pattern(identity)
    if layout != "auto" and layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}: choose one of auto, {', '.join(LAYOUTS)}")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise UsageError("no file extension was given for submissions")
    source = Path(source)
    skipped: list[Skipped] = []
    notes: list[str] = []
    if source.is_dir():
        root = source
    elif source.is_file():
        if not zipfile.is_zipfile(source):
            raise UsageError(f"{source} is neither a folder nor a zip file")
        if extract_to is None:
            raise UsageError(f"{source} is a zip: give a folder to extract it into")
        root = Path(extract_to)
        skipped += extract_zip(source, root, limits)
        notes.append(f"extracted {source.name} into {root}")
    elif source.exists() or source.is_symlink():
        raise UsageError(f"{source} is neither a folder nor a zip file")
    else:
        raise UsageError(f"{source}: no such file or folder")

    walk = Walk(limits, exts)
    top = walk.entries(root, skipped)
    chosen = layout
    if layout == "auto":
        chosen, why = detect(top)
        # An export wrapped in one folder (Gradescope's "assignment_N_export/"): step inside.
        for _ in range(3):
            if chosen != "folder" or len(top) != 1 or not top[0].is_dir:
                break
            inner_skipped: list[Skipped] = []
            inner = walk.entries(top[0].path, inner_skipped)
            inner_layout, inner_why = detect(inner)
            if inner_layout == "folder":
                break
            skipped += inner_skipped
            notes.append(f"stepped into {top[0].name}/")
            root, top, chosen, why = top[0].path, inner, inner_layout, inner_why
        notes.append(f"layout {chosen}: {why}")
    if not top:
        raise UsageError(f"{source} holds no files to grade")

    reader = Reader(walk, pattern, root, limits)
    found = reader.read(chosen, top, skipped)
    if layout != "auto" and layout != "folder" and not reader.followed and not pattern:
        raise UsageError(f"{source} does not look like a {layout.capitalize()} export: "
                         f"no entry follows its naming (see docs/batch.md, Sources)")
    submissions = _choose(found, exts, fits, skipped)
    skipped.sort(key=lambda s: (str(s.path), s.member or "", s.reason))
    return Collected(chosen, root, tuple(submissions), tuple(skipped), tuple(notes), tuple(reader.conflicts))


def identity_pattern(identity: str | re.Pattern | None) -> re.Pattern | None:
    """``identity`` compiled and checked: it must have a named group ``id``."""
    if identity is None:
        return None
    try:
        pattern = re.compile(identity) if isinstance(identity, str) else identity
    except re.error as e:
        raise UsageError(f"the identity pattern {identity!r} is not a valid regular expression: {e}") from None
    if "id" not in pattern.groupindex:
        raise UsageError(f"the identity pattern {pattern.pattern!r} needs a named group for the student's id, "
                         "as in (?P<id>\\d+)")
    return pattern


def _choose(students: dict[str, Student], exts: tuple[str, ...], fits: Callable[[Path], bool] | None,
            skipped: list[Skipped]) -> list[StudentFile]:
    """Each student's best file: one that fits, then by extension, resubmission, upload order, mtime.
    Every other file of theirs is listed in ``skipped``, saying which file was chosen and why that one."""
    def key(c: Candidate):
        try:
            mtime = os.lstat(c.path).st_mtime_ns
        except OSError:
            mtime = 0
        return (bool(fits(c.path)) if fits else True, -exts.index(c.path.suffix.lower()),
                c.resubmission, c.serial, mtime, str(c.path))

    out = []
    for sid in sorted(students):
        student = students[sid]
        if not student.candidates:
            continue
        keyed = sorted(((key(c), c) for c in student.candidates), key=lambda kc: kc[0], reverse=True)
        (best_key, best), rest = keyed[0], keyed[1:]
        skipped += [Skipped(c.path, _not_chosen(c, k, best, best_key), sid) for k, c in rest]
        out.append(StudentFile(student.student_id, student.name, best.path, best.late,
                               tuple(c.path for _, c in rest), student.email, student.group, best.resubmission))
    return out


def _not_chosen(c: Candidate, k: tuple, best: Candidate, best_key: tuple) -> str:
    """Why another of a student's files was not graded: the first way ``_choose``'s order put ``best`` first."""
    chosen = f"{best.path.name} was graded instead"
    if k[0] != best_key[0]:
        return f"does not fit the assignment; {chosen}"
    if k[1] != best_key[1]:
        return f"a {c.path.suffix.lower()} file, and a {best.path.suffix.lower()} one comes first; {chosen}"
    if k[2] != best_key[2]:
        return (f"an older upload ({_upload(c.resubmission)}); {best.path.name}, {_upload(best.resubmission)}, "
                "was graded instead")
    if k[3] != best_key[3]:
        return f"uploaded before {best.path.name}, which was graded instead"
    if k[4] != best_key[4]:
        return f"older (modified earlier) than {best.path.name}, which was graded instead"
    return f"one file per student is graded; {chosen}"


def _upload(resubmission: int) -> str:
    return f"resubmission {resubmission}" if resubmission else "the first upload"
