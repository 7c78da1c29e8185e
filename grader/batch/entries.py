"""A graded submission made ready to store: its status decided from the report's facts, its report
encoded as JSON (trimmed when too large, scores kept), all without the store, so that it can run
where the submission was graded (a grading process, a Dask worker). ``grader.batch.store`` keeps it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

from grader.model.outcomes import NotRun, Stopped
from grader.model.result import Report
from grader.model.text import shortened

#: The largest report kept whole (its JSON, in UTF-8 bytes); a larger one is trimmed (``trimmed``).
MAX_REPORT_BYTES = 4 * 1024 * 1024
#: How much of each long text field a trimmed report keeps.
TRIMMED_TEXT = 2000

Status = Literal["graded", "timeout", "error", "unreadable", "internal"]
#: Every status a stored result may have.
STATUSES: tuple[str, ...] = ("graded", "timeout", "error", "unreadable", "internal")
#: Stops that mean a time limit ended the run.
TIMEOUT_STOPS = frozenset({"case_timeout", "submission_timeout"})



def status_of(report: Report) -> Status:
    """A submission's status in the gradebook, from the facts of its report (the one place that decides).

    - ``unreadable``: the file could not be read as a notebook or Python (``report.problem``);
    - ``timeout``: a time limit stopped the run: some case's cause is ``stopped`` by a
      ``case_timeout`` or ``submission_timeout``, or a case was ``not_run`` because the
      submission's time ran out;
    - ``error``: the worker stopped some other way (crashed, ran out of memory or disk, broke the
      protocol, exited, stopped answering) or could not be restarted again;
    - ``graded``: every case reached a verdict, whatever it is (a wrong answer, an exception of
      the student's code, a blank, a syntax error are all graded: their score says so).

    ``internal`` (the grader itself failed) is never read from a report: the caller says it, for a
    submission the pipeline raised on. The first that applies wins, in the order above.
    """
    if report.problem is not None:
        return "unreadable"
    stops = [c.cause.stop.kind for c in report.cases if isinstance(c.cause, Stopped)]
    not_run = [c.cause.why for c in report.cases if isinstance(c.cause, NotRun)]
    if any(kind in TIMEOUT_STOPS for kind in stops) or "time" in not_run:
        return "timeout"
    if stops or not_run:
        return "error"
    return "graded"


@dataclass(frozen=True)
class Entry:
    """A result made ready to store (``prepare``): what the store's row holds, and its report as it
    reads back from that row (``report``: what the outputs are written from)."""

    status: Status
    score: float | None
    max_score: float | None
    #: the report's JSON (None: internal error, or too large even trimmed)
    text: str | None
    trimmed: bool
    message: str
    report: Report | None


def prepare(report: Report | None, status: Status | None = None, message: str = "") -> Entry:
    """A result ready for ``Store.put``, decided without the store (see ``Store.record``): pure, so
    that it can run where the submission was graded."""
    if status is None:
        if report is None:
            raise ValueError("a result without a report needs a status (\"internal\")")
        status = status_of(report)
    if status not in STATUSES:
        raise ValueError(f"invalid status {status!r}, expected one of {', '.join(STATUSES)}")
    if status != "internal" and report is None:
        raise ValueError(f"a {status!r} result needs its report")
    text, trimmed, why = _encoded(report) if report is not None else (None, False, "")
    if report is not None and text is None:
        status, message = "internal", why
    elif why:
        message = f"{message}; {why}" if message else why
    score = report.score if report is not None and status != "internal" else None
    max_score = report.max_score if report is not None and status != "internal" else None
    stored = Report.from_dict(json.loads(text)) if text is not None else None
    return Entry(status, score, max_score, text, trimmed, message, stored)


def _encoded(report: Report) -> tuple[str | None, bool, str]:
    """The report's JSON, trimmed when too large: (text or None, trimmed, why)."""
    text = _json(report)
    if len(text.encode("utf-8")) <= MAX_REPORT_BYTES:
        return text, False, ""
    size = len(text.encode("utf-8"))
    for smaller in (_trimmed(report, TRIMMED_TEXT), _trimmed(report, 200, bare=True)):
        text = _json(smaller)
        if len(text.encode("utf-8")) <= MAX_REPORT_BYTES:
            return text, True, (f"report trimmed: its JSON was {size} bytes, over the {MAX_REPORT_BYTES} kept "
                                "whole (long texts cut, figures dropped; scores kept)")
    return None, False, (f"report not stored: its JSON is {size} bytes even after trimming, over the "
                         f"{MAX_REPORT_BYTES} a result may take")


def _json(report: Report) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _trimmed(report: Report, most: int, bare: bool = False) -> Report:
    """``report`` with its long texts cut to ``most`` characters and no figures (``bare``: nor any
    details, causes or notes: only each case's verdict and points). The notes' facts are dropped: their
    words are kept, and the facts may hold whole tracebacks."""
    def cut(s: str) -> str:
        return "" if bare else shortened(s, most)

    cases = tuple(dataclasses.replace(c, figures=(), details=cut(c.details), hint=cut(c.hint),
                                      reason=shortened(c.reason, most), problems=() if bare else c.problems)
                  for c in report.cases)
    causes = () if bare else tuple(dataclasses.replace(c, fix=cut(c.fix), evidence=cut(c.evidence))
                                   for c in report.causes)
    return dataclasses.replace(
        report, cases=cases, causes=causes,
        notes=tuple(cut(n) for n in report.notes if not bare), note_facts=(),
        instructor_notes=tuple(cut(n) for n in report.instructor_notes if not bare),
        problem=None if report.problem is None else shortened(report.problem, most))
