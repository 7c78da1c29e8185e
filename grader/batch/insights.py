"""The class at a glance: a batch's stored results summed up, as plain data, terminal text and HTML.

``class_summary(rows, columns)`` reads each student's latest ``StoredResult`` (``Store.results``)
and returns a ``ClassSummary``: scores (mean, median, extremes, a histogram over ``0..max``), each
case's pass rate (lowest first), the recognised mistakes and the other causes of lost points
(counted in students, with a few example students each), how many results have each status, and
how long the submissions took. ``summary_text`` and ``summary_html`` show it; nothing here reads
or writes a file.

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
- **Similar code** (``flags``, ``grader.batch.similarity``, given to the views, not counted here):
  every flagged pair, in the flags' order, each student with their share of code found in the
  other's; each flagged student needs attention, beside any status problem (one row, reasons joined).

Student ids are untrusted: ``safe_text`` makes them one line without control characters here,
``summary_html`` escapes every string it shows, and the text shortens what would not fit.
"""
from __future__ import annotations

import html
import math
import statistics
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from grader.batch.gradebook import Column, columns_from_results
from grader.batch.similarity import Flag
from grader.batch.store import STATUSES, Handed, StoredResult
from grader.execute.slots import SlotTally
from grader.report.text import safe_text, shortened
from grader.report.messages import hidden_label
from grader.spec.mistakes import Mistake

#: Bins of the score histogram.
BINS = 10
#: Example students shown for a mistake, a cause or a status.
EXAMPLES = 3
#: How many recognised mistakes and other causes the summary keeps.
TOP_MISTAKES = 10
TOP_CAUSES = 5
#: The terminal summary's width.
WIDTH = 80
#: Statuses that are not a clean grade, shown with example students.
TROUBLE = ("timeout", "error", "unreadable", "internal")
_ID_WIDTH = 24


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
    """One student as the class page lists them: score, status, the first cause of lost points, and why
    they need the TA's attention ("" when they do not). ``student_id`` is as stored (made safe where shown)."""

    student_id: str
    name: str
    score: float | None
    max_score: float | None
    status: str
    cause: str
    attention: str
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


@dataclass(frozen=True)
class WorkersUsed:
    """How a batch run's submissions were run, as it happened: ``graded`` in this run, ``slots`` warm
    slots set up (0: a cold worker each), what they did (``tally``), and with no slots, why
    (``cold_why``, in words)."""

    graded: int
    slots: int
    tally: SlotTally = SlotTally()
    cold_why: str = ""


# -- the numbers -------------------------------------------------------------------------------

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


#: Why a status needs the TA, in words.
_ATTENTION = {"unreadable": "the file could not be read: ask for it again", "timeout": "ran out of time",
              "error": "the submission crashed or ran out of memory", "internal": "the grader failed: run again"}


def _student_line(r: StoredResult) -> StudentLine:
    causes = r.report.causes if r.report is not None else ()
    forbidden = next((c.title for c in causes if c.kind == "forbidden"), "")
    attention = _ATTENTION.get(r.status, "") or (f"forbidden API: {forbidden}" if forbidden else "")
    cause = causes[0].title if causes else (r.message if r.status != "graded" else "")
    return StudentLine(r.student_id, safe_text(r.name, one_line=True), r.score,
                       r.max_score, r.status, shortened(safe_text(cause, one_line=True), 160), attention, r.handed)


def handed_lines(summary: ClassSummary) -> list[str]:
    """Late work, resubmissions and files not graded, in words (nothing when there are none)."""
    xs = summary.students_list
    late = [safe_text(x.student_id, one_line=True) for x in xs if x.handed.late]
    out = [_fit(f"Late: {_count(len(late), 'student')}: " + ", ".join(_short_id(i) for i in late))] if late else []
    return out + _resubmitted_lines(summary)


def _resubmitted_lines(summary: ClassSummary) -> list[str]:
    xs = summary.students_list
    again = [safe_text(x.student_id, one_line=True) for x in xs if x.handed.resubmission]
    others = sum(x.handed.others_count for x in xs)
    out = []
    if again:
        out.append(_fit(f"Resubmitted: {_count(len(again), 'student')}, the latest upload graded: "
                        + ", ".join(_short_id(i) for i in again)))
    if others:
        out.append(f"Files not graded: {others} (older uploads and other files: gradebook.csv, column "
                   "files_not_graded)")
    return out


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


# -- showing it --------------------------------------------------------------------------------

def _n(x: float | None) -> str:
    """A number as the summary prints it: ``7``, ``7.5``, ``7.33``; ``-`` for none."""
    return "-" if x is None else f"{round(x, 2):g}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _short_id(student_id: str) -> str:
    return shortened(student_id, _ID_WIDTH)


def _fit(line: str) -> str:
    return shortened(line, WIDTH)


def _examples_line(indent: str, examples: Sequence[str]) -> str | None:
    return _fit(f"{indent}e.g. " + ", ".join(_short_id(s) for s in examples)) if examples else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def workers_lines(used: WorkersUsed) -> list[str]:
    """What a run's workers did, in words: the warm slots as they ran (not as planned), each fallback
    to a cold worker and each zygote replaced, with the reasons. Nothing when nothing was graded."""
    t = used.tally
    if not used.graded:
        return []
    if not used.slots:
        return [f"workers: a cold one per submission (torch imported for each){f': {used.cold_why}' if used.cold_why else ''}"]
    if not t.cold and not t.replaced:
        return [f"workers: {_count(used.slots, 'warm slot')}, {_count(t.zygotes_started, 'zygote')} started "
                f"(torch imported once in each), {_count(t.forks, 'worker')} forked from them"
                + (f" for {_count(used.graded, 'submission')}" if t.forks != used.graded else "")]
    line = f"workers: {_count(used.slots, 'warm slot')}; {_count(t.forks, 'worker')} forked warm"
    if t.cold:
        line += f", {t.cold} started cold instead (torch imported for each: slower)"
    if t.replaced:
        line += f"; {_count(t.replaced, 'zygote')} replaced after a run ({t.zygotes_started} started)"
    return [line] + [f"  why: {safe_text(r, one_line=True)}" for r in t.reasons]


def summary_text(summary: ClassSummary, workers: WorkersUsed | None = None,
                 not_graded: Sequence[tuple[str, str]] = (), flags: Sequence[Flag] | None = None) -> str:
    """The class summary for a terminal: every line at most ``WIDTH`` characters (but the reasons of
    ``workers``, this run's workers: ``workers_lines``, and of ``not_graded``: the students the source
    names who have no grade, each with why, ``grader.batch.run.not_graded``). ``flags``: the pairs of
    students with similar code (``grader.batch.similarity``), listed when there are some (whether they
    were computed at all, ``grade batch`` says after this text)."""
    s = summary
    out: list[str | None] = [f"Class: {s.students} student{'s' if s.students != 1 else ''}, {s.scored} with a score"]
    if s.scored:
        out.append(f"Scores (of {_n(s.max_score)}): mean {_n(s.mean)}, median {_n(s.median)}, "
                   f"min {_n(s.min)}, max {_n(s.max)}")
    out.append("Statuses: " + ", ".join(f"{c.status} {c.count}" for c in s.statuses))
    for c in s.statuses:
        if c.examples:
            out.append(_examples_line(f"  {c.status}: ", c.examples))
    out += handed_lines(s)
    rt = s.runtimes
    if rt.max is not None:
        out.append(f"Runtime: median {_secs(rt.median)}, 90th percentile {_secs(rt.p90)}, max {_secs(rt.max)}")
        out.append(_fit("  slowest: " + ", ".join(f"{_short_id(i)} ({_secs(t)})" for i, t in rt.slowest)))
    if s.histogram and s.scored:
        out += ["", "Score histogram"]
        labels = [f"{_n(b.low)}-{_n(b.high)}" for b in s.histogram]
        wide = max(len(x) for x in labels)
        counts = max(len(str(b.count)) for b in s.histogram)
        room = min(WIDTH - wide - counts - 6, 50)
        most = max(b.count for b in s.histogram) or 1
        for label, b in zip(labels, s.histogram):
            bar = "█" * round(room * b.count / most)
            out.append(f"  {label:>{wide}} | {b.count!s:>{counts}} {bar}".rstrip())
    if s.cases:
        out += ["", "Pass rate per case (lowest first)"]
        if _ungraded(s):
            out += textwrap.wrap(_rates_of(s), WIDTH, initial_indent="  ", subsequent_indent="  ")
        for c in s.cases:
            hidden = f" {hidden_label()}" if c.visibility == "hidden" else ""
            out.append(_fit(f"  {_pct(c.rate):>4}  {f'{c.passed}/{c.graded}':>9}  {c.name}{hidden}"))
    for heading, tallies in (("Recognised mistakes (students)", s.mistakes),
                             ("Other causes of lost points (students)", s.causes)):
        if tallies:
            out += ["", heading]
            for t in tallies:
                out.append(_fit(f"  {t.students:>4}  {t.title}"))
                out.append(_examples_line("        ", t.examples))
    if flags:
        out += ["", f"Similar code ({_count(len(flags), 'pair')}; each one's share of code found in the other's)"]
        out += [_fit(f"  {_short_id(safe_text(f.student_a, one_line=True))} ({_pct(f.similarity_a)}) and "
                     f"{_short_id(safe_text(f.student_b, one_line=True))} ({_pct(f.similarity_b)})") for f in flags]
    if not_graded:
        out += ["", f"Not graded ({_count(len(not_graded), 'student')}: see why, put it right, run again)"]
        out += [f"  {safe_text(sid, one_line=True)}: {safe_text(why, one_line=True)}" for sid, why in not_graded]
    if workers is not None and workers.graded:
        out += ["", f"This run: {workers.graded} graded"] + workers_lines(workers)
    return "\n".join(line for line in out if line is not None) + "\n"


_STYLE = """
.grader-class{font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1f24;max-width:72rem;line-height:1.4}
.grader-class h1{font-size:1.4rem;margin-bottom:.2rem} .grader-class .meta{color:#57606a;margin-bottom:1rem}
.grader-class h2{font-size:1.15rem;margin:1.4rem 0 .4rem}
.grader-class table{border-collapse:collapse;width:100%;margin:.6rem 0}
.grader-class th,.grader-class td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;
vertical-align:top;overflow-wrap:anywhere} .grader-class th{overflow-wrap:normal}
.grader-class table.students td:nth-child(4),.grader-class table.students td:last-child{white-space:nowrap}
.grader-class td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.grader-class .bar{background:#eaeef2;border-radius:3px;height:.8rem;min-width:8rem}
.grader-class .bar span{display:block;height:100%;border-radius:3px;background:#1a7f37}
.grader-class .bar span.low{background:#cf222e} .grader-class .bar span.mid{background:#d4a72c}
.grader-class .hidden{color:#57606a;font-size:.85rem} .grader-class .examples{color:#57606a}
.grader-class svg.hist{max-width:100%;height:auto}
.grader-class svg.hist rect{fill:#0969da} .grader-class svg.hist text{font-size:11px;fill:#1b1f24}
.grader-class svg.hist line{stroke:#57606a}
.grader-class .cards{display:flex;gap:1rem;flex-wrap:wrap}
.grader-class .card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .9rem;min-width:7rem}
.grader-class .card b{display:block;font-size:1.3rem} .grader-class .trouble b{color:#cf222e}
.grader-class tr.trouble td{background:#fff5f5}
.grader-class .late{background:#fff1e5;color:#953800;border:1px solid #ffb77c;border-radius:1em;padding:0 .45em;
font-size:.8rem;white-space:nowrap} .grader-class span.meta{color:#57606a;font-size:.85rem}
"""


def summary_html(summary: ClassSummary, assignment: str, not_graded: Sequence[tuple[str, str]] = (),
                 flags: Sequence[Flag] | None = None) -> str:
    """The class page: one self-contained HTML file (inline CSS and SVG, no scripts, nothing fetched);
    ``not_graded``: as ``summary_text``'s; ``flags``: the pairs of students with similar code, in their
    order (``grader.batch.similarity``; None: they were not computed, and the page says so)."""
    e = html.escape
    s = summary
    lines = {x.student_id: x for x in s.students_list}
    parts = [f"<style>{_STYLE}</style><div class='grader-class'>",
             f"<h1>Class summary: {e(safe_text(assignment, one_line=True))}</h1>",
             f"<div class='meta'>{s.students} student{'s' if s.students != 1 else ''} · {s.scored} with a score"
             + (f" · mean {_n(s.mean)}, median {_n(s.median)}, min {_n(s.min)}, max {_n(s.max)} of {_n(s.max_score)}"
                if s.scored else "") + "</div>"]
    parts.append("<h2>Statuses</h2><div class='cards'>")
    for c in s.statuses:
        trouble = " trouble" if c.status in TROUBLE and c.count else ""
        ex = (f"<div class='examples'>e.g. {e(', '.join(c.examples))}</div>" if c.examples else "")
        parts.append(f"<div class='card{trouble}'><b>{c.count}</b>{e(c.status)}{ex}</div>")
    late = sum(x.handed.late for x in s.students_list)
    if late:
        parts.append(f"<div class='card'><b>{late}</b>late</div>")
    parts.append("</div>")
    parts += [f"<p class='meta'>{e(line)}</p>" for line in _resubmitted_lines(s)]
    if not_graded:
        parts.append(f"<h2>Not graded ({_count(len(not_graded), 'student')})</h2><table><thead><tr><th>Student</th>"
                     "<th>Why (put it right and run the batch again)</th></tr></thead><tbody>")
        parts += [f"<tr><td>{e(safe_text(sid, one_line=True))}</td><td>{e(safe_text(why, one_line=True))}</td></tr>"
                  for sid, why in not_graded]
        parts.append("</tbody></table>")
    attention = needs_attention(s, flags or ())
    if attention:
        parts.append(f"<h2>Needs attention ({_count(len(attention), 'student')})</h2><table class='attention'>"
                     "<thead><tr><th>Student</th><th>Why</th><th>Feedback</th></tr></thead><tbody>")
        parts += [f"<tr><td>{e(safe_text(sid, one_line=True))}</td><td>{e(why)}</td>"
                  f"<td>{_feedback_link(lines[sid]) if sid in lines else ''}</td></tr>"
                  for sid, why in attention.items()]
        parts.append("</tbody></table>")
    parts.append(_similar_html(flags, lines))
    if s.histogram and s.scored:
        parts += ["<h2>Scores</h2>", _histogram_svg(s.histogram)]
    if s.cases:
        parts.append("<h2>Pass rate per case (lowest first)</h2>"
                     + (f"<p class='meta'>{e(_rates_of(s))}</p>" if _ungraded(s) else ""))
        parts.append("<table><thead><tr><th>Case</th><th>Points</th>"
                     "<th>Passed</th><th>Rate</th><th></th></tr></thead><tbody>")
        for c in s.cases:
            hidden = f" <span class='hidden'>{e(hidden_label())}</span>" if c.visibility == "hidden" else ""
            width = 0 if c.rate is None else round(c.rate * 100, 1)
            tone = "" if c.rate is None or c.rate >= 0.8 else " mid" if c.rate >= 0.5 else " low"
            parts.append(f"<tr><td>{e(c.name)}{hidden}</td><td class='num'>{_n(c.max_score)}</td>"
                         f"<td class='num'>{c.passed}/{c.graded}</td><td class='num'>{_pct(c.rate)}</td>"
                         f"<td><div class='bar'><span class='{tone.strip()}' style='width:{width}%'></span></div>"
                         "</td></tr>")
        parts.append("</tbody></table>")
    for heading, tallies in (("Recognised mistakes", s.mistakes), ("Other causes of lost points", s.causes)):
        if tallies:
            parts.append(f"<h2>{heading}</h2><table><thead><tr><th>Students</th><th>What</th><th>For example</th>"
                         "</tr></thead><tbody>")
            parts += [f"<tr><td class='num'>{t.students}</td><td>{e(t.title)}</td>"
                      f"<td class='examples'>{e(', '.join(t.examples))}</td></tr>" for t in tallies]
            parts.append("</tbody></table>")
    if s.students_list:
        parts.append(f"<h2>Students ({len(s.students_list)})</h2><table class='students'><thead><tr><th>Student</th>"
                     "<th>Name</th><th>Score</th><th>Status</th><th>Main cause of lost points</th><th>Handed in</th>"
                     "<th>Feedback</th></tr></thead><tbody>")
        for x in s.students_list:
            score = "" if x.score is None else f"{_n(x.score)}/{_n(x.max_score)}"
            trouble = " class='trouble'" if x.student_id in attention else ""
            parts.append(f"<tr{trouble}><td>{e(safe_text(x.student_id, one_line=True))}</td><td>{e(x.name)}</td>"
                         f"<td class='num'>{score}</td>"
                         f"<td>{e(x.status)}</td><td>{e(x.cause)}</td><td>{_handed_html(x.handed)}</td>"
                         f"<td>{_feedback_link(x)}</td></tr>")
        parts.append("</tbody></table>")
    rt = s.runtimes
    if rt.max is not None:
        slowest = ", ".join(f"{e(i)} ({_secs(t)})" for i, t in rt.slowest)
        parts.append(f"<h2>Runtime per submission</h2><table><tbody><tr><td>median</td><td class='num'>"
                     f"{_secs(rt.median)}</td></tr><tr><td>90th percentile</td><td class='num'>{_secs(rt.p90)}"
                     f"</td></tr><tr><td>max</td><td class='num'>{_secs(rt.max)}</td></tr><tr><td>slowest</td>"
                     f"<td class='examples'>{slowest}</td></tr></tbody></table>")
    parts.append("</div>")
    title = e(safe_text(assignment, one_line=True))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Class summary: {title}</title>"
            "</head><body style='margin:2rem'>\n" + "\n".join(parts) + "\n</body></html>\n")


def _handed_html(h: Handed) -> str:
    """The file graded and its late badge, then its resubmission and the files not graded (named on hover)."""
    e = html.escape
    head = ([f"<span class='file'>{e(h.file)}</span>"] if h.file else []) + (["<span class='late'>late</span>"]
                                                                            if h.late else [])
    notes = [f"resubmission {h.resubmission}"] if h.resubmission else []
    if h.others_count:
        more = h.others_count - len(h.others)
        names = "; ".join(h.others) + (f"; and {more} more" if more > 0 else "")
        notes.append(f"<span title='{e(names, quote=True)}'>{_count(h.others_count, 'other file')} not graded</span>")
    return " ".join(head + ([f"<span class='meta'>{' · '.join(notes)}</span>"] if notes else []))


def _ungraded(s: ClassSummary) -> int:
    """How many students no case was graded for (an unreadable file, the grader's failure)."""
    return s.students - max((c.graded for c in s.cases), default=0)


def _rates_of(s: ClassSummary) -> str:
    """Why the rates' denominators are below the class's size."""
    n = _ungraded(s)
    return (f"Rates are of the students each case was graded for: {_count(n, 'student')} of {s.students} had no "
            "case graded (an unreadable file, or the grader's failure; see the statuses).")


def needs_attention(summary: ClassSummary, flags: Sequence[Flag] = ()) -> dict[str, str]:
    """Who needs the TA's attention, by student id as stored (in id order), and why: a status problem or a
    forbidden API (``StudentLine.attention``), and code similar to others' (``similarity_reasons``),
    joined by "; " when a student has both."""
    similar = similarity_reasons(flags)
    why = {x.student_id: x.attention for x in summary.students_list}
    for sid, reason in similar.items():
        why[sid] = "; ".join(r for r in (why.get(sid, ""), reason) if r)
    return {sid: why[sid] for sid in sorted(why) if why[sid]}


def similarity_reasons(flags: Sequence[Flag]) -> dict[str, str]:
    """Each flagged student's reason to be looked at, by student id as stored: their share of code found in
    each other student's, in the flags' order ("similar code: 93% shared with bob, 85% with cy"), the first
    ``EXAMPLES`` others named."""
    shares: dict[str, list[tuple[float, str]]] = {}
    for f in flags:
        shares.setdefault(f.student_a, []).append((f.similarity_a, f.student_b))
        shares.setdefault(f.student_b, []).append((f.similarity_b, f.student_a))
    reasons = {}
    for sid, pairs in shares.items():
        said = [f"{_pct(share)} {'shared with' if i == 0 else 'with'} {safe_text(other, one_line=True)}"
                for i, (share, other) in enumerate(pairs[:EXAMPLES])]
        more = f", and {_count(len(pairs) - EXAMPLES, 'other')} (see Similar code)" if len(pairs) > EXAMPLES else ""
        reasons[sid] = "similar code: " + ", ".join(said) + more
    return reasons


def _similar_html(flags: Sequence[Flag] | None, lines: Mapping[str, StudentLine]) -> str:
    """The similar pairs, each student linked to their feedback page; one line when there are none, or
    when they were not computed."""
    if flags is None:
        return ("<p class='meta'>Similar code: not computed (copydetect is not installed: "
                "pip install copydetect, the grader's [batch] extra).</p>")
    if not flags:
        return "<p class='meta'>Similar code: none flagged.</p>"
    parts = [f"<h2>Similar code ({_count(len(flags), 'pair')})</h2><p class='meta'>Pairs of students whose graded "
             "code is alike, the template's code left out; a share is how much of that student's code is also in "
             "the other's. For a person to look at, never a verdict.</p><table class='similar'><thead><tr>"
             "<th>Student</th><th>Share</th><th>Student</th><th>Share</th></tr></thead><tbody>"]
    for f in flags:
        parts.append("<tr>" + "".join(f"<td>{_student_link(sid, lines.get(sid))}</td><td class='num'>{_pct(share)}</td>"
                                      for sid, share in ((f.student_a, f.similarity_a), (f.student_b, f.similarity_b)))
                     + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _feedback_href(student_id: str) -> str:
    """Where a student's feedback page is, beside class.html, escaped for an attribute."""
    from grader.batch.feedback import feedback_name

    return f"feedback/{html.escape(feedback_name(student_id))}.html"


def _feedback_link(x: StudentLine) -> str:
    """A link to the student's feedback page, beside class.html (none for the grader's own failure)."""
    return "" if x.status == "internal" else f"<a href='{_feedback_href(x.student_id)}'>page</a>"


def _student_link(student_id: str, line: StudentLine | None) -> str:
    """The student's id (made safe, escaped), linked to their feedback page where they have one."""
    shown = html.escape(safe_text(student_id, one_line=True))
    if line is None or line.status == "internal":
        return shown
    return f"<a href='{_feedback_href(student_id)}'>{shown}</a>"


#: The histogram's text size (px), and a generous width of one of its characters (digits, ".", "–") in ems:
#: a bar is at least as wide as its longest range label, so that labels never run into each other.
_HIST_FONT, _HIST_CHAR_EM = 11, 0.65


def _histogram_svg(bins: Sequence[Bin]) -> str:
    """The histogram as inline SVG: a bar per bin, its count above, its range below. Bars are wide enough for
    the longest range label (``11.25–12.5``); the page's CSS shrinks the whole drawing to fit a narrow window."""
    labels = [f"{_n(b.low)}–{_n(b.high)}" for b in bins]
    bar = max(48, math.ceil(_HIST_CHAR_EM * _HIST_FONT * max(map(len, labels), default=0)))
    gap, height, top_pad, bottom = 6, 160, 18, 34
    width = len(bins) * (bar + gap) + gap
    most = max(b.count for b in bins) or 1
    shapes = [f"<line x1='0' y1='{top_pad + height}' x2='{width}' y2='{top_pad + height}'/>"]
    for i, (b, label) in enumerate(zip(bins, map(html.escape, labels))):
        x = gap + i * (bar + gap)
        h = round(height * b.count / most, 1)
        y = top_pad + height - h
        shapes.append(f"<rect x='{x}' y='{y}' width='{bar}' height='{h}'><title>{label}: {b.count}</title></rect>"
                      f"<text x='{x + bar / 2}' y='{y - 4}' text-anchor='middle'>{b.count}</text>"
                      f"<text x='{x + bar / 2}' y='{top_pad + height + 16}' text-anchor='middle'>{label}</text>")
    total = top_pad + height + bottom
    return (f"<svg class='hist' role='img' aria-label='score histogram' width='{width}' height='{total}' "
            f"viewBox='0 0 {width} {total}'>{''.join(shapes)}</svg>")
