"""A batch's gradebooks, as CSV text, from the stored results (pure functions, and one writer).

Three files under the batch's out folder:

- ``gradebook.csv``: one row per student, sorted by student id (plain string order), with the
  columns ``student_id, name, score, max_score, status``, then what the student handed in
  (``late``: ``yes`` when the LMS marked the upload late; ``resubmission``: which upload was
  graded, 0 for the first, N for the LMS's ``-N``; ``file``: the file graded; ``files_not_graded``:
  their other files, ``; ``-separated), and then one column per case, headed by
  the case's id, in the case file's order, holding the points the case earned. Only students'
  rows: nothing else is mixed into the data, so a spreadsheet or ``pandas.read_csv`` reads it as
  it is. A cell is empty where there is nothing to say: every score of an ``internal`` result
  (the grader failed; the next run regrades it), and the cases of a report that lists none (an
  ``unreadable`` file scores 0 with its declared maximum, and no case ran).
- ``gradebook_points.csv``: what each case column is worth, one row per case in the same order:
  ``case_id, name, visibility, max_score``. Kept apart so that the gradebook's rows are all
  students.
- ``canvas_import.csv``: Canvas's gradebook import layout: ``Student, ID, SIS User ID, SIS Login
  ID, Section`` and one assignment column, ``"<assignment> (<Canvas assignment id>)"`` (just the
  name when the id is not known: Canvas then offers to create the assignment). The student id
  goes in the column the caller names (``ID``, the Canvas user id, for a Canvas export); the
  columns we do not know stay empty. No "Points Possible" row: Canvas takes the points from the
  assignment. The column can be named exactly as Canvas names it and the students as Canvas shows
  them (``CanvasNames``, from Canvas's own gradebook export); an unreadable submission's cell is
  empty (the student must submit again: a 0 would be recorded as their grade).

Student ids and names are untrusted: every text cell goes through ``safe_text`` (control
characters shown escaped) and ``spreadsheet_safe`` (a leading ``=``, ``+``, ``-`` or ``@`` gets a
quote, so no spreadsheet runs it as a formula). Numbers are written without a trailing ``.0``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.batch.store import Handed, StoredResult
from grader.model.text import safe_text, spreadsheet_safe

GRADEBOOK = "gradebook.csv"
POINTS = "gradebook_points.csv"
CANVAS = "canvas_import.csv"

#: The gradebook's leading columns; the cases' columns follow.
GRADEBOOK_FIELDS = ("student_id", "name", "score", "max_score", "status", "late", "resubmission", "file",
                    "files_not_graded")
POINTS_FIELDS = ("case_id", "name", "visibility", "max_score")
CANVAS_FIELDS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


@dataclass(frozen=True)
class Column:
    """One case's column: its id (the header), name, visibility and points."""

    case_id: str
    name: str = ""
    max_score: float = 0.0
    visibility: str = "public"


def columns_from_cases(cases: Iterable[Any]) -> tuple[Column, ...]:
    """The columns of an assignment's cases (``grader.spec.cases.Case``: ``id``, ``name``,
    ``points``, ``visibility``), in the case file's order: the columns to use for a batch."""
    return tuple(Column(c.id, c.name, float(c.points), c.visibility) for c in cases)


def columns_from_results(rows: Iterable[StoredResult]) -> tuple[Column, ...]:
    """The columns the stored reports show, for when the case file is not at hand: the cases of the
    first report (by student id) that lists any, in its order, then any case only later reports
    have, in the order they are met."""
    seen: dict[str, Column] = {}
    for row in _sorted(rows):
        for c in row.report.cases if row.report is not None else ():
            if c.case_id not in seen:
                seen[c.case_id] = Column(c.case_id, c.name, c.max_score, c.visibility)
    return tuple(seen.values())


def gradebook_csv(rows: Iterable[StoredResult], columns: Sequence[Column]) -> str:
    """``gradebook.csv``: a row per student (by student id), a column per case (in ``columns``' order)."""
    out, writer = _writer()
    writer.writerow([*GRADEBOOK_FIELDS, *(_text(c.case_id) for c in columns)])
    for row in _sorted(rows):
        graded = row.status != "internal" and row.report is not None
        scores = {c.case_id: c.score for c in row.report.cases} if graded else {}
        writer.writerow([_text(row.student_id), _text(row.name),
                         _number(row.score if graded else None), _number(row.max_score if graded else None),
                         row.status, *_handed_cells(row.handed), *(_number(scores.get(c.case_id)) for c in columns)])
    return out.getvalue()


def _handed_cells(h: Handed) -> list[str]:
    more = h.others_count - len(h.others)
    others = "; ".join(h.others) + (f"; and {more} more" if more > 0 else "")
    return ["yes" if h.late else "", str(h.resubmission), _text(h.file), _text(others)]


def points_csv(columns: Sequence[Column]) -> str:
    """``gradebook_points.csv``: each case column's points, in the gradebook's order."""
    out, writer = _writer()
    writer.writerow(POINTS_FIELDS)
    for c in columns:
        writer.writerow([_text(c.case_id), _text(c.name), _text(c.visibility), _number(c.max_score)])
    return out.getvalue()


#: Statuses whose score is no grade to upload: the grader failed (``internal``), or the file could not be
#: read (``unreadable``: the student must submit again; a 0 would be recorded as their grade).
NO_UPLOAD = ("internal", "unreadable")
#: The largest roster read (Canvas's gradebook export of a course: a row per student).
MAX_ROSTER_BYTES = 20 << 20


@dataclass(frozen=True)
class CanvasNames:
    """How ``canvas_import.csv`` names things as Canvas does: the assignment's column exactly as in Canvas's
    own gradebook export (``Multi-headed attention (123456)``: name and id, how Canvas matches it), and each
    student's name by Canvas user id, from that export (``read_roster``)."""

    column: str = ""
    students: dict[str, str] = dataclasses.field(default_factory=dict)


def read_roster(path: Path) -> dict[str, str]:
    """Canvas user id -> the name Canvas shows, from Canvas's gradebook export (CSV with ``Student`` and ``ID``
    columns; its "Points Possible" row and rows without an id are skipped). ``UsageError`` when it is not one."""
    from grader.errors import UsageError

    try:
        if path.stat().st_size > MAX_ROSTER_BYTES:
            raise UsageError(f"{path} is larger than {MAX_ROSTER_BYTES >> 20} MB: not a Canvas gradebook export")
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UsageError(f"cannot read the roster {path}: {e.strerror or e}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"Student", "ID"} <= set(reader.fieldnames):
        raise UsageError(f"{path} has no Student and ID columns: export the gradebook from Canvas "
                         "(Grades → Export → CSV) and pass that file")
    names = {}
    for row in reader:
        sid, name = (row.get("ID") or "").strip(), (row.get("Student") or "").strip()
        if sid and name and not name.startswith("Points Possible"):
            names[sid] = safe_text(name, one_line=True)
    return names


def canvas_csv(rows: Iterable[StoredResult], assignment: str, canvas_id: str | int | None = None,
               id_column: str = "ID", names: CanvasNames | None = None) -> str:
    """``canvas_import.csv``: Canvas's import layout with one assignment column of total scores.

    ``id_column`` is where the student id goes: ``ID`` (Canvas's user id, what a Canvas export's
    file names carry), ``SIS User ID`` or ``SIS Login ID``. A score that is no grade (``NO_UPLOAD``) is
    left empty: Canvas leaves the grade as it was. ``names``: the column and the students' names as
    Canvas has them (else the assignment's name, with ``canvas_id`` when known, and the name the
    submission's file gave).
    """
    if id_column not in CANVAS_FIELDS[1:4]:
        raise ValueError(f"id_column must be one of {', '.join(CANVAS_FIELDS[1:4])}, not {id_column!r}")
    header = (names.column if names and names.column
              else f"{assignment} ({canvas_id})" if canvas_id not in (None, "") else assignment)
    roster = names.students if names else {}
    out, writer = _writer()
    writer.writerow([*CANVAS_FIELDS, _text(header)])
    where = CANVAS_FIELDS.index(id_column)
    for row in _sorted(rows):
        cells = [_text(roster.get(row.student_id, row.name)), "", "", "", ""]
        cells[where] = _text(row.student_id)
        writer.writerow([*cells, _number(row.score if row.status not in NO_UPLOAD else None)])
    return out.getvalue()


def write_gradebooks(out_dir: str | os.PathLike[str], rows: Iterable[StoredResult], columns: Sequence[Column],
                     assignment: str, canvas_id: str | int | None = None, id_column: str = "ID",
                     names: CanvasNames | None = None) -> list[Path]:
    """Write the three files into ``out_dir``, each replaced whole (a reader never sees half a file);
    returns their paths."""
    rows = list(rows)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((GRADEBOOK, gradebook_csv(rows, columns)), (POINTS, points_csv(columns)),
                       (CANVAS, canvas_csv(rows, assignment, canvas_id, id_column, names))):
        written.append(write_whole(folder / name, text))
    return written


def _sorted(rows: Iterable[StoredResult]) -> list[StoredResult]:
    return sorted(rows, key=lambda r: (r.student_id, r.grading_key, r.file_sha))


def _writer() -> tuple[io.StringIO, Any]:
    out = io.StringIO()
    return out, csv.writer(out, lineterminator="\n")


def _text(value: str) -> str:
    return spreadsheet_safe(safe_text(value, one_line=True))


def _number(x: float | None) -> str:
    if x is None:
        return ""
    r = round(float(x), 6)
    if not math.isfinite(r):
        return repr(r)
    return str(int(r)) if r == int(r) else repr(r)


def write_whole(path: Path, text: str) -> Path:
    """Write ``path`` whole (a reader never sees half a file), readable by everyone (mode 644)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
