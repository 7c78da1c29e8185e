"""The class at a glance, in numbers: a batch's stored results summed up as plain data.

``class_summary(rows, columns)`` reads each student's latest ``StoredResult`` (``Store.results``)
and returns a ``ClassSummary``: scores (mean, median, extremes, a histogram over ``0..max``), each
case's pass rate (lowest first), the recognised mistakes and the other causes of lost points
(counted in students, with a few example students each), how many results have each status, how
long the submissions took, and a line per student. ``grader.batch.class_page`` words and draws it
(class.txt, class.html); nothing here reads or writes a file. The only words here are titles, which
name what is counted and order it: a cause's title from the reports, or a declared mistake's name
(``mistake_title``).

What counts:

- **Scores**: every result but ``internal`` (the grader failed, so there is no grade). The
  histogram's range is ``0..max_score``, the largest ``max_score`` of those results (else the
  sum of the columns' points), in bars a whole number of points wide where that is whole;
  bin ``i`` holds ``low <= score < high``, the last one also its ``high``. A score is put in a
  bin with a small tolerance, so ``0.3`` of ``1`` in 10 bins lands in ``0.3..0.4`` despite
  floating point.
- **Pass rate**: of the students whose report graded the case (``passed``, ``failed`` or
  ``error``; a ``pending`` case or a report without it is not counted), how many passed it. A
  case no one was graded on has no rate and comes last.
- **Recognised mistakes**: each case's ``mistakes`` ids, titled by the mistake's declared name
  (``mistakes``: the assignment's ``Mistake`` by id; its partial credit said beside it), else by
  the case's cause when that cause is of kind ``mistake`` and the case matched one mistake only;
  a ``mistake`` cause none of whose cases carries an id (a trimmed report) counts under its
  title. A student counts once per mistake however many cases show it.
- **Other causes**: every cause of another kind, by title; a student counts once per title.
- **Runtime**: ``seconds`` of every result, internal ones included (their time was spent too);
  the 90th percentile is the nearest-rank one (a value that occurred).

Student ids are untrusted: ``safe_text`` makes them one line without control characters here, where
the summary keeps them (the example students, the slowest); ``StudentLine.student_id`` stays as stored.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from grader.batch.gradebook import Column, columns_from_results
from grader.batch.entries import STATUSES
from grader.batch.store import Handed, StoredResult
from grader.execute.slots import SlotTally
from grader.model.text import safe_text, shortened
from grader.spec.mistakes import Mistake

#: Bins of the score histogram.
BINS = 10
#: Example students shown for a mistake, a cause or a status.
EXAMPLES = 3
#: How many recognised mistakes and other causes the summary keeps.
TOP_MISTAKES = 10
TOP_CAUSES = 5
#: Statuses that are not a clean grade, shown with example students.
TROUBLE = ("timeout", "error", "unreadable", "internal")


@dataclass(frozen=True)
class Bin:
    """One bar of the score histogram: ``low <= score < high`` (the last bar includes ``high``)."""

    low: float
    high: float
    count: int


@dataclass(frozen=True)
class CaseRate:
    """One case's pass rate: ``passed`` of ``graded`` students (``rate`` None when none was graded)."""

    case_id: str
    name: str
    visibility: str
    max_score: float
    passed: int
    graded: int

    @property
    def rate(self) -> float | None:
        return self.passed / self.graded if self.graded else None


@dataclass(frozen=True)
class Tally:
    """A mistake or a cause: how many students it concerns, and the first few of them (by id)."""

    key: str
    title: str
    students: int
    examples: tuple[str, ...]
    #: the cause's kind (``mistake`` for a recognised mistake)
    kind: str = "mistake"


@dataclass(frozen=True)
class StatusCount:
    status: str
    count: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Runtimes:
    """Seconds per submission: ``median``, ``p90`` (nearest rank), ``max``; None for an empty class."""

    median: float | None
    p90: float | None
    max: float | None
    #: the slowest students, slowest first: (student id, seconds)
    slowest: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class StudentLine:
    """One student as the class page lists them: score, status, the first cause of lost points, and the
    forbidden API they called, if any (with the status, what the page says they need the TA's attention
    for). ``student_id`` is as stored (made safe where shown)."""

    student_id: str
    name: str
    score: float | None
    max_score: float | None
    status: str
    cause: str
    #: the title of the report's first ``forbidden`` cause ("" when it has none)
    forbidden: str
    #: the file graded, late or not, which upload, the files not graded (as the store keeps them)
    handed: Handed = Handed()


@dataclass(frozen=True)
class ClassSummary:
    """The class in numbers (see the module's docstring for what counts)."""

    students: int
    #: how many results have a score (all but ``internal``)
    scored: int
    max_score: float
    mean: float | None
    median: float | None
    min: float | None
    max: float | None
    histogram: tuple[Bin, ...]
    cases: tuple[CaseRate, ...]
    mistakes: tuple[Tally, ...]
    causes: tuple[Tally, ...]
    statuses: tuple[StatusCount, ...]
    runtimes: Runtimes
    #: every student, by id
    students_list: tuple[StudentLine, ...] = ()

    def status(self, name: str) -> int:
        """How many results have status ``name``."""
        return next((s.count for s in self.statuses if s.status == name), 0)

    @property
    def ungraded(self) -> int:
        """How many students no case was graded for (an unreadable file, the grader's failure)."""
        return self.students - max((c.graded for c in self.cases), default=0)


@dataclass(frozen=True)
class WorkersUsed:
    """How a batch run's submissions were run, as it happened: ``graded`` in this run, ``slots`` warm
    slots set up (0: a cold worker each), what they did (``tally``), and with no slots, why
    (``cold_why``, in words)."""

    graded: int
    slots: int
    tally: SlotTally = SlotTally()
    cold_why: str = ""


def class_summary(rows: Iterable[StoredResult], columns: Sequence[Column] | None = None,
                  bins: int = BINS, mistakes: Mapping[str, Mistake] | None = None) -> ClassSummary:
    """The class's summary from each student's stored result; ``columns`` give the cases' order,
    names and visibility (``columns_from_results(rows)`` when None); ``mistakes``: the assignment's
    known mistakes by id (``load_mistakes``), whose names title the recognised mistakes (None, or an
    id not there: the title the reports gave it)."""
    if bins < 1:
        raise ValueError("a histogram needs at least one bin")
    rows = sorted(rows, key=lambda r: r.student_id)
    if columns is None:
        columns = columns_from_results(rows)
    ids = {id(r): safe_text(r.student_id, one_line=True) for r in rows}
    graded = [r for r in rows if r.status != "internal" and r.score is not None]
    scores = [float(r.score) for r in graded]  # type: ignore[arg-type]
    top = max((float(r.max_score) for r in graded if r.max_score is not None), default=0.0)
    if top <= 0:
        top = float(sum(c.max_score for c in columns))
    return ClassSummary(
        students=len(rows), scored=len(scores), max_score=top,
        mean=statistics.fmean(scores) if scores else None,
        median=statistics.median(scores) if scores else None,
        min=min(scores, default=None), max=max(scores, default=None),
        histogram=histogram(scores, top, bins),
        cases=_case_rates(graded, columns),
        mistakes=_mistakes(graded, ids, mistakes or {})[:TOP_MISTAKES],
        causes=_causes(graded, ids)[:TOP_CAUSES],
        statuses=tuple(StatusCount(s, sum(r.status == s for r in rows),
                                   tuple(ids[id(r)] for r in rows if r.status == s)[:EXAMPLES]
                                   if s in TROUBLE else ())
                       for s in STATUSES),
        runtimes=_runtimes(rows, ids),
        students_list=tuple(_student_line(r) for r in rows))


def _student_line(r: StoredResult) -> StudentLine:
    causes = r.report.causes if r.report is not None else ()
    forbidden = next((c.title for c in causes if c.kind == "forbidden"), "")
    cause = causes[0].title if causes else (r.message if r.status != "graded" else "")
    return StudentLine(r.student_id, safe_text(r.name, one_line=True), r.score,
                       r.max_score, r.status, shortened(safe_text(cause, one_line=True), 160), forbidden, r.handed)


def histogram(scores: Sequence[float], top: float, bins: int = BINS) -> tuple[Bin, ...]:
    """At most ``bins`` bars over ``0..top``; a score outside goes to the nearest bar. A whole ``top`` of 2
    or more gets bars a whole number of points wide (28 in 10 bars: 0–3, 3–6, …, 27–28; 6 in 10: one point
    each), else ``bins`` equal bars. With no range (``top`` 0), one bar ``0..0`` holds every score, or
    there are none for no scores."""
    if top <= 0:
        return (Bin(0.0, 0.0, len(scores)),) if scores else ()
    step = math.ceil(top / bins) if top >= 2 and float(top).is_integer() else top / bins
    n = math.ceil(top / step - 1e-9)
    counts = [0] * n
    for s in scores:
        i = math.floor(s / step + 1e-9)
        counts[min(max(i, 0), n - 1)] += 1
    return tuple(Bin(step * i, min(step * (i + 1), top), c) for i, c in enumerate(counts))


def _case_rates(rows: list[StoredResult], columns: Sequence[Column]) -> tuple[CaseRate, ...]:
    passed: Counter[str] = Counter()
    graded: Counter[str] = Counter()
    for r in rows:
        for c in r.report.cases if r.report is not None else ():
            if c.status != "pending":
                graded[c.case_id] += 1
                passed[c.case_id] += c.status == "passed"
    rates = [CaseRate(c.case_id, c.name or c.case_id, c.visibility, c.max_score, passed[c.case_id],
                      graded[c.case_id]) for c in columns]
    order = {c.case_id: i for i, c in enumerate(rates)}
    return tuple(sorted(rates, key=lambda c: (c.rate is None, c.rate or 0.0, order[c.case_id])))


def mistake_title(mistake: Mistake) -> str:
    """A known mistake as the class summary names it: its declared name, and its partial credit if any."""
    name = safe_text(mistake.name, one_line=True)
    return f"{name} (partial credit: {mistake.credit:.0%})" if mistake.credit else name


def _mistakes(rows: list[StoredResult], ids: dict[int, str], known: Mapping[str, Mistake]) -> tuple[Tally, ...]:
    students: dict[tuple[str, str], list[str]] = {}
    titles: dict[tuple[str, str], Counter[str]] = {}
    for r in rows:
        if r.report is None:
            continue
        found: dict[tuple[str, str], str] = {}  # ("id", mistake id) or ("title", title) -> a title, or ""
        with_ids = set()
        for c in r.report.cases:
            cause = r.report.cause(c.cause_ref) if c.cause_ref else None
            titled = cause is not None and cause.kind == "mistake" and len(c.mistakes) == 1
            for m in c.mistakes:
                with_ids.add(c.case_id)
                key = ("id", m)
                if titled or key not in found:
                    found[key] = cause.title if titled else found.get(key, "")  # type: ignore[union-attr]
        for cause in r.report.causes:
            if cause.kind == "mistake" and not with_ids.intersection(cause.cases):
                found.setdefault(("title", cause.title), cause.title)
        for key, title in found.items():
            students.setdefault(key, []).append(ids[id(r)])
            titles.setdefault(key, Counter())[title] += 1
    tallies = []
    for key, who in students.items():
        named = [t for t, _ in titles[key].most_common() if t]
        plain = safe_text(key[1], one_line=True)
        declared = known.get(key[1]) if key[0] == "id" else None
        title = mistake_title(declared) if declared is not None else named[0] if named else plain
        tallies.append(Tally(plain, title, len(who), tuple(who[:EXAMPLES])))
    return tuple(sorted(tallies, key=lambda t: (-t.students, t.title, t.key)))


def _causes(rows: list[StoredResult], ids: dict[int, str]) -> tuple[Tally, ...]:
    students: dict[str, list[str]] = {}
    kinds: dict[str, Counter[str]] = {}
    for r in rows:
        seen = set()
        for cause in r.report.causes if r.report is not None else ():
            if cause.kind == "mistake" or cause.title in seen:
                continue
            seen.add(cause.title)
            students.setdefault(cause.title, []).append(ids[id(r)])
            kinds.setdefault(cause.title, Counter())[cause.kind] += 1
    tallies = [Tally(title, title, len(who), tuple(who[:EXAMPLES]), kinds[title].most_common(1)[0][0])
               for title, who in students.items()]
    return tuple(sorted(tallies, key=lambda t: (-t.students, t.title)))


def _runtimes(rows: list[StoredResult], ids: dict[int, str]) -> Runtimes:
    seconds = sorted(float(r.seconds) for r in rows)
    if not seconds:
        return Runtimes(None, None, None)
    p90 = seconds[max(math.ceil(0.9 * len(seconds)) - 1, 0)]
    slowest = sorted(rows, key=lambda r: (-r.seconds, r.student_id))[:EXAMPLES]
    return Runtimes(statistics.median(seconds), p90, seconds[-1],
                    tuple((ids[id(r)], float(r.seconds)) for r in slowest))
