"""Each student's feedback files: an HTML page, Gradescope JSON, text, and their own notebook with the causes
under its cells, for the student audience."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from grader.batch.gradebook import write_whole
from grader.report.audience import for_audience
from grader.report.render import render, render_rich_text
from grader.model.result import Report

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")
#: The suffix of a student's notebook page (their own file, the causes under its cells).
NOTEBOOK_PAGE = ".notebook.html"


def feedback_name(student_id: str) -> str:
    """A file name for a student's feedback: their id with anything unusual replaced, and a short hash
    of the id so two ids never share a file."""
    safe = _UNSAFE_NAME.sub("_", student_id)[:80].lstrip(".") or "student"
    return f"{safe}-{hashlib.sha256(student_id.encode()).hexdigest()[:8]}"


def feedback_texts(report: Report, source: Path | None = None) -> tuple[tuple[str, str], ...]:
    """(suffix, text) of each feedback file of ``report``, for the student (hidden cases by name,
    points and result only); with the graded file ``source``, its notebook page too (``.notebook.html``)."""
    shown = for_audience(report, "student")
    texts = ((".html", render(shown, "html")), (".json", render(shown, "gradescope")),
             (".txt", render_rich_text(shown, width=100)))
    return texts + (((NOTEBOOK_PAGE, render(shown, "notebook", source)),) if source is not None else ())


def notebook_page(folder: Path, student_id: str) -> Path:
    """Where a student's notebook page is (``feedback_texts``' ``.notebook.html``)."""
    return folder / (feedback_name(student_id) + NOTEBOOK_PAGE)


def write_texts(folder: Path, student_id: str, texts: tuple[tuple[str, str], ...]) -> list[Path]:
    """Write one student's feedback files (``feedback_texts``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    base = feedback_name(student_id)
    return [write_whole(folder / (base + suffix), text) for suffix, text in texts]
