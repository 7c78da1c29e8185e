"""The LMS layouts of a batch's SOURCE: which layout a folder is, and which top-level entry is whose.

Each layout (Gradescope, Moodle, Canvas, a plain folder; detected in ``LAYOUTS`` order) reads a
top-level entry as one student's, with the facts the LMS wrote (``Reading``: the id, the name, a
late flag, the resubmission number, ...); ``Reader`` turns the readings into students, each with
their candidate files, and into the conflicts of entries that claim one student. The rules each
layout follows, and the order they are tried in, are in ``docs/batch.md`` ("Sources").

Who an entry belongs to comes only from what the LMS itself wrote: Canvas's and Moodle's fixed
fields in the entry's name, Gradescope's own metadata at the top of the export, the entry's
name in a plain folder. Never from anything a student put inside their submission. Where a
student's free text sits on both sides of the fixed fields (a display name on the left, a file
name on the right), every way of reading the name is tried: a name that reads as two students
is not guessed at (``Reader.settle``). Student ids and names are plain strings kept as data:
they are never used to build a path or a command here, and whoever shows them or writes them to
a CSV makes them safe there (``grader.model.text``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from grader.batch.gradescope_meta import GRADESCOPE_METADATA, SUBMISSION_NAME, read_gradescope_metadata
from grader.batch.walk import MAX_TEXT, Entry, SourceLimits, Skipped, TooMany, Walk

#: the layouts, in the order detection tries them (the first that matches wins)
LAYOUTS = ("gradescope", "moodle", "canvas", "folder")

#: Canvas's fields after a student's name: "_[late_]<user id>_<submission id>_<file>" (ids never begin with 0)
_CANVAS_AT = re.compile(r"_(?:(?P<late>late)_)?(?P<id>[1-9]\d*)_(?P<serial>[1-9]\d*)_(?P<file>.+)\Z",
                        re.IGNORECASE | re.DOTALL)
#: what Canvas never leaves inside a student's name (it writes "-<digits>-" instead)
_CANVAS_NOT_IN_NAME = re.compile(r"_\d+_")
_RESUBMISSION = re.compile(r"(?P<stem>.*)-(?P<n>\d{1,6})\Z", re.DOTALL)
#: Moodle's folder: the name is free text, Moodle's own fields end it (greedy: read from the right)
_MOODLE_FOLDER = re.compile(r"(?P<name>.*)_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z]+)_\Z", re.DOTALL)
#: Moodle's fields after a student's name in a file's name, the file's own name after them
_MOODLE_AT = re.compile(r"_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z]+)_(?P<file>.+)\Z", re.DOTALL)


@dataclass(frozen=True)
class Reading:
    """One way of reading a top-level entry as one student's: the facts its layout gives.

    ``id`` and ``name`` are as the LMS wrote them (None: not given, as when only the caller's
    identity pattern reads the entry). ``late``, ``serial`` (Canvas's submission id: the upload's
    order) and ``resubmission`` (Canvas's ``-N``) describe the entry's files; ``email`` and ``group``
    (the other submitters' ids) come from Gradescope's metadata. ``unit`` is who the layout itself
    says the entry is: the LMS's id and name for Canvas and Moodle, whose several entries may be one
    student's; None for Gradescope and a plain folder, where each entry is its own.
    """

    id: str | None = None
    name: str | None = None
    late: bool = False
    serial: int = 0
    resubmission: int = 0
    email: str | None = None
    group: tuple[str, ...] = ()
    unit: object = None


@dataclass(frozen=True)
class Conflict:
    """Entries of the SOURCE that claim one student although the layout says they are different people
    (two Gradescope submissions whose first submitter is the same, two entries of a plain folder with
    one name, two Canvas or Moodle names with one id, an identity pattern reading one id from two
    people's entries). None of them is graded as that student: which one is theirs is a person's call."""

    student_id: str
    paths: tuple[Path, ...]

    @property
    def reason(self) -> str:
        """What happened and what to do, in plain words."""
        return (f"{len(self.paths)} entries claim this student ({', '.join(p.name for p in self.paths)}): none "
                "is graded as them; keep the one that is theirs (or rename the other) and run again")


@dataclass
class Candidate:
    """One of a student's files that may be graded, with the facts that order it among their others."""

    path: Path
    late: bool = False
    resubmission: int = 0
    serial: int = 0


@dataclass
class Student:
    """A student as their entries read: who they are, and their candidate files (None: not read yet)."""

    student_id: str
    name: str | None = None
    email: str | None = None
    group: tuple[str, ...] = ()
    candidates: list[Candidate] | None = None


def _canvas_readings(name: str) -> list[Reading]:
    """Every way ``name`` reads as Canvas's ``<name>_[late_]<user id>_<submission id>_<file>``, left to right.

    Canvas writes a ``_<digits>_`` inside a student's name as ``-<digits>-`` (it reads ids back the
    same way), and its ids never begin with 0: a reading whose name part holds one is not Canvas's.
    """
    out = []
    for at in re.finditer(r"(?<=.)_(?=(?:late_)?[1-9])", name, re.IGNORECASE | re.DOTALL):
        i = at.start()
        m = _CANVAS_AT.match(name, i)
        if m is None or _CANVAS_NOT_IN_NAME.search(name[:i]):
            continue
        resub = _RESUBMISSION.match(Path(m["file"]).stem)
        out.append(Reading(id=m["id"], name=name[:i], late=m["late"] is not None, serial=int(m["serial"][:18]),
                           resubmission=int(resub["n"]) if resub else 0))
    return out


def _moodle_readings(name: str, is_dir: bool) -> list[Reading]:
    """Every way ``name`` reads as Moodle's: a folder ``<name>_<id>_assignsubmission_<plugin>_`` (read from
    the right, where Moodle's own fields end it: one reading), or a file
    ``<name>_<id>_assignsubmission_<plugin>_<file>`` (the student's name on the left and their file's
    name on the right are both free text: every reading, left to right)."""
    if is_dir:
        m = _MOODLE_FOLDER.match(name)
        return [Reading(id=m["id"], name=m["name"])] if m and m["name"] else []
    out = []
    for at in re.finditer(r"(?<=.)_(?=\d+_assignsubmission_)", name, re.DOTALL):
        m = _MOODLE_AT.match(name, at.start())
        if m is not None:
            out.append(Reading(id=m["id"], name=name[:at.start()]))
    return out


def detect(top: list[Entry]) -> tuple[str, str]:
    """The layout of a folder from its top-level entries, and the reason, in ``LAYOUTS`` order."""
    entries = [e for e in top if e.name != GRADESCOPE_METADATA]
    half = len(entries) / 2
    if len(entries) < len(top):
        return "gradescope", f"{GRADESCOPE_METADATA} at the top"
    scope = sum(1 for e in entries if e.is_dir and SUBMISSION_NAME.match(e.name))
    if entries and scope > half:
        return "gradescope", f"{scope} of {len(entries)} entries are submission_<id> folders"
    moodle = sum(1 for e in entries if _moodle_readings(e.name, e.is_dir))
    if entries and moodle > half:
        return "moodle", f"{moodle} of {len(entries)} entries are named Name_<id>_assignsubmission_..."
    canvas = sum(1 for e in entries if not e.is_dir and _canvas_readings(e.name))
    if entries and canvas > half:
        return "canvas", f"{canvas} of {len(entries)} files are named name_<userid>_<submissionid>_<file>"
    return "folder", "a file or a folder per student"


@dataclass(frozen=True)
class _Claim:
    """One top-level entry read as one student's: the layout's facts, the id it gives, and the *unit*:
    who the layout itself says the entry is (the LMS's id and name for Canvas and Moodle, whose several
    entries may be one student's; the entry itself for Gradescope and a plain folder)."""

    entry: Entry
    facts: Reading
    student_id: str
    name: str | None
    unit: object


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()[:MAX_TEXT]
    return value or None


class Reader:
    """Each layout's rule: which entry is whose, with which facts."""

    def __init__(self, walk: Walk, pattern: re.Pattern | None, root: Path, limits: SourceLimits):
        self.walk, self.pattern, self.root, self.limits = walk, pattern, root, limits
        self.students: dict[str, Student] = {}
        self.conflicts: list[Conflict] = []
        #: entries that follow the layout's naming (a forced layout that none follows is a usage error)
        self.followed = 0

    def read(self, layout: str, top: list[Entry], skipped: list[Skipped]) -> dict[str, Student]:
        """The students of ``top`` under ``layout``, by id; what is no one's, or not read, goes to ``skipped``,
        and the students claimed by entries the layout says are different people to ``conflicts``."""
        metadata: dict[str, list[dict[str, str]]] = {}
        if layout == "gradescope" and any(e.name == GRADESCOPE_METADATA and not e.is_dir for e in top):
            metadata = read_gradescope_metadata(self.root / GRADESCOPE_METADATA, self.limits.max_metadata_bytes,
                                                skipped)
        readings: list[tuple[Entry, list[Reading]]] = []
        for entry in top:
            if layout == "gradescope" and entry.name == GRADESCOPE_METADATA and not entry.is_dir:
                continue
            options = getattr(self, "_" + layout)(entry, metadata, skipped)
            if options:
                readings.append((entry, options))
        claims: dict[str, list[_Claim]] = {}
        for entry, facts in self.settle(readings, skipped, self.pattern is not None):
            claim = self._claim(entry, facts, skipped)
            if claim is not None:
                claims.setdefault(claim.student_id, []).append(claim)
        for sid in sorted(claims):
            group = claims[sid]
            if len({c.unit for c in group}) > 1:  # two entries the LMS says are different people claim one id
                self.conflicts.append(Conflict(sid, tuple(sorted(c.entry.path for c in group))))
            else:
                self._student(sid, layout, group, skipped)
        return self.students

    @staticmethod
    def settle(readings: list[tuple[Entry, list[Reading]]], skipped: list[Skipped],
               patterned: bool = False) -> list[tuple[Entry, Reading]]:
        """One reading per entry. An entry whose readings give several ids keeps those not contradicted by
        an entry that reads one way only (one LMS id, one name); if that still leaves more than one id,
        whose it is cannot be told: it is skipped, never guessed (``patterned``: the caller's identity
        pattern decides, and the entry counts as its own person, without the layout's facts)."""
        certain: dict[str | None, set[str | None]] = {}
        for _, options in readings:
            if len({o.id for o in options}) == 1:
                certain.setdefault(options[0].id, set()).add(options[0].name)
        out = []
        for entry, options in readings:
            every = sorted({str(o.id) for o in options})
            if len(every) > 1:
                options = [o for o in options if o.id not in certain or o.name in certain[o.id]]
                if len({o.id for o in options}) != 1 and patterned:
                    out.append((entry, Reading()))
                    continue
                if len({o.id for o in options}) != 1:
                    skipped.append(Skipped(entry.path, f"its name reads as more than one student's (ids "
                                                       f"{', '.join(every)}): whose it is cannot be told, so it is "
                                                       "not graded"))
                    continue
            out.append((entry, options[0]))
        return out

    def _claim(self, entry: Entry, facts: Reading, skipped: list[Skipped]) -> _Claim | None:
        """The student ``entry`` is, by the layout's rule or the caller's identity pattern."""
        unit = entry.path if facts.unit is None else facts.unit
        if self.pattern is not None:
            found = [m for m in self.pattern.finditer(entry.name) if _text(m.group("id"))]
            ids = sorted({_text(m.group("id")) for m in found})
            if not ids:
                skipped.append(Skipped(entry.path, "its name does not match the identity pattern"))
                return None
            if len(ids) > 1:
                skipped.append(Skipped(entry.path, f"the identity pattern finds more than one id in its name "
                                                   f"({', '.join(ids)}): whose it is cannot be told, so it is "
                                                   "not graded"))
                return None
            m = found[0]
            name = m.group("name") if "name" in self.pattern.groupindex else None
            return _Claim(entry, facts, ids[0], _text(name) or _text(facts.name), unit)
        student_id = _text(facts.id)
        if student_id is None:
            skipped.append(Skipped(entry.path, "no student id in its name"))
            return None
        return _Claim(entry, facts, student_id, _text(facts.name), unit)

    def _student(self, sid: str, layout: str, claims: list[_Claim], skipped: list[Skipped]) -> None:
        """The student ``sid`` from their entries, their folders walked within ``max_student_files``
        (more: the student is reported, not read; the rest of the class is not held up)."""
        mine: list[Skipped] = []
        found: list[tuple[Path, _Claim]] = []
        budget = self.limits.max_student_files
        try:
            for claim in claims:
                budget -= 1
                if budget < 0:
                    raise TooMany
                entry = claim.entry
                if not entry.is_dir:
                    found.append((entry.path, claim))
                    continue
                files, used = self.walk.files(entry.path, mine, sid, 1, budget)
                budget -= used
                own = [f for f in files if layout == "gradescope" and f.name == GRADESCOPE_METADATA
                       and f.parent == entry.path]
                for f in own:
                    mine.append(Skipped(f, "the student's own submission_metadata.yml: not read (who handed in a "
                                           "submission comes only from the export's metadata, at its top)", sid))
                files = [f for f in files if f not in own]
                if not files and not own:
                    mine.append(Skipped(entry.path, "holds no files", sid))
                found += [(f, claim) for f in files]
        except TooMany:
            cap = self.limits.max_student_files
            skipped.append(Skipped(claims[0].entry.path, f"holds more than {cap} files and folders, more than a "
                                   "student's submission may: not read, not graded (take out what is not the "
                                   "submission, such as a virtual environment or a data set, or grade the notebook "
                                   "alone with `grade FILE`)", sid))
            return
        skipped += mine
        student = Student(sid, candidates=[])
        for claim in claims:
            student.name = student.name or claim.name
            student.email = student.email or _text(claim.facts.email)
            student.group = student.group or claim.facts.group
        for path, claim in found:
            problem = self.walk.problem(path)
            if problem:
                skipped.append(Skipped(path, problem, sid))
            else:
                f = claim.facts
                student.candidates.append(Candidate(path, f.late, f.resubmission, f.serial))
        self.students[sid] = student

    def _not_layout(self, entry: Entry, layout: str, skipped: list[Skipped]) -> list[Reading]:
        if self.pattern is not None:  # the caller's pattern decides who it is
            return [Reading()]
        skipped.append(Skipped(entry.path, f"does not follow {layout}'s naming"))
        return []

    def _canvas(self, entry: Entry, metadata, skipped) -> list[Reading]:
        readings = [] if entry.is_dir else _canvas_readings(entry.name)
        if not readings:
            return self._not_layout(entry, "Canvas", skipped)
        self.followed += 1
        return [replace(r, unit=("canvas", r.id, r.name)) for r in readings]

    def _moodle(self, entry: Entry, metadata, skipped) -> list[Reading]:
        readings = _moodle_readings(entry.name, entry.is_dir)
        if not readings:
            return self._not_layout(entry, "Moodle", skipped)
        self.followed += 1
        return [replace(r, unit=("moodle", r.id, r.name)) for r in readings]

    def _gradescope(self, entry: Entry, metadata, skipped) -> list[Reading]:
        m = SUBMISSION_NAME.match(entry.name) if entry.is_dir else None
        if not m:
            return self._not_layout(entry, "Gradescope", skipped)
        self.followed += 1
        people = metadata.get(entry.name, [])  # the export's own metadata; never a file the student handed in
        ids = [_text(p.get("sid")) or _text(p.get("email")) or _text(p.get("name")) for p in people]
        ids = [i for i in ids if i]
        first = people[0] if people else {}
        return [Reading(id=_text(first.get("sid")) or _text(first.get("email")) or entry.name,
                        name=first.get("name"), email=_text(first.get("email")), group=tuple(ids[1:]))]

    def _folder(self, entry: Entry, metadata, skipped) -> list[Reading]:
        self.followed += 1
        if not entry.is_dir and entry.path.suffix.lower() not in self.walk.exts and self.pattern is None:
            skipped.append(Skipped(entry.path, f"not a {' or '.join(self.walk.exts)} file"))  # a README: no one's
            return []
        return [Reading(id=entry.name if entry.is_dir else Path(entry.name).stem)]
