"""The class summary (grader.batch.insights): its numbers, the terminal text and the HTML page."""
from __future__ import annotations

import re
from html import escape as html_escape

import pytest

from grader.batch.gradebook import Column
from grader.batch.insights import (
    Bin,
    class_summary,
    histogram,
    _histogram_svg,
    summary_html,
    summary_text,
)
from grader.batch.store import StoredResult
from grader.report.outcomes import Cause
from grader.report.result import CaseResult, CauseSummary, Report

SHA = "0" * 64
COLUMNS = (Column("a", "SDPA: shapes", 1, "public"), Column("b", "MHA: values", 3, "public"),
           Column("c", "MHA: grads", 2, "hidden"))
HOSTILE = "<img src=x onerror=alert(1)>"
SCALING = "Known mistake: scores not scaled (partial credit: 50% of each case it explains)"


def passed(case_id: str, points: float) -> CaseResult:
    return CaseResult(case_id, case_id.upper(), "T", "passed", points, points)


def failed(case_id: str, points: float, mistakes: tuple[str, ...] = (), ref: int = 0,
           status: str = "failed") -> CaseResult:
    return CaseResult(case_id, case_id.upper(), "T", status, 0, points, "wrong", mistakes=mistakes,
                      cause=Cause("wrong_answer"), cause_ref=ref)


def row(student_id: str, *cases: CaseResult, causes: tuple[CauseSummary, ...] = (), status: str = "graded",
        seconds: float = 1.0, problem: str | None = None, declared: float | None = None) -> StoredResult:
    rep = Report(f"{student_id}.ipynb", "mha", tuple(cases), problem, declared_max_score=declared, causes=causes)
    return StoredResult(student_id, student_id.title(), SHA, "key", status, rep.score, rep.max_score, seconds, rep)


def internal(student_id: str, seconds: float = 0.5) -> StoredResult:
    return StoredResult(student_id, "", SHA, "key", "internal", None, None, seconds, None, message="boom")


def mistake_cause(number: int, cases: tuple[str, ...], title: str = SCALING) -> CauseSummary:
    return CauseSummary(number, "mistake", title, cases, 1.5)


def exception_cause(number: int, cases: tuple[str, ...], title: str = "RuntimeError in forward: boom") -> CauseSummary:
    return CauseSummary(number, "exception", title, cases, 2)


@pytest.fixture
def klass() -> list[StoredResult]:
    return [
        row("ada", passed("a", 1), passed("b", 3), passed("c", 2), seconds=1.0),
        # the same mistake in two cases: one student, counted once
        row("bob", passed("a", 1), failed("b", 3, ("no-scaling",), 1), failed("c", 2, ("no-scaling",), 1),
            causes=(mistake_cause(1, ("b", "c")),), seconds=2.0),
        row("cy", passed("a", 1), failed("b", 3, ("no-scaling",), 1), failed("c", 2, (), 2, "error"),
            causes=(mistake_cause(1, ("b",)), exception_cause(2, ("c",))), seconds=3.0),
        row("dee", failed("a", 1, (), 1, "error"), failed("b", 3, (), 1, "error"), failed("c", 2, (), 1, "error"),
            causes=(CauseSummary(1, "stopped", "Timed out", ("a", "b", "c"), 6),), status="timeout", seconds=30.0),
        row("eve", problem="not a notebook", declared=6, status="unreadable", seconds=0.2),
        internal("fay", seconds=0.1),
    ]


# -- the numbers -------------------------------------------------------------------------------

def test_scores_statuses_and_counts(klass):
    s = class_summary(klass, COLUMNS)
    assert s.students == 6 and s.scored == 5          # the internal row has no score
    assert s.max_score == 6
    assert (s.min, s.max) == (0, 6)
    assert s.mean == pytest.approx((6 + 1 + 1 + 0 + 0) / 5)
    assert s.median == 1
    assert {c.status: c.count for c in s.statuses} == \
        {"graded": 3, "timeout": 1, "error": 0, "unreadable": 1, "internal": 1}
    assert s.status("internal") == 1 and s.status("nonsense") == 0
    examples = {c.status: c.examples for c in s.statuses}
    assert examples["timeout"] == ("dee",) and examples["internal"] == ("fay",) and examples["graded"] == ()


def test_pass_rate_per_case_lowest_first(klass):
    s = class_summary(klass, COLUMNS)
    got = [(c.case_id, c.name, c.visibility, c.passed, c.graded) for c in s.cases]
    # the unreadable file lists no case and the internal row no report: neither counts as graded
    assert got == [("b", "MHA: values", "public", 1, 4), ("c", "MHA: grads", "hidden", 1, 4),
                   ("a", "SDPA: shapes", "public", 3, 4)]
    assert [c.rate for c in s.cases] == [0.25, 0.25, 0.75]   # a tie keeps the case file's order


def test_pending_cases_and_cases_no_one_ran():
    local = row("ada", passed("a", 1), CaseResult("c", "C", "T", "pending", 0, 2))
    s = class_summary([local], COLUMNS)
    by_id = {c.case_id: c for c in s.cases}
    assert (by_id["a"].passed, by_id["a"].graded, by_id["a"].rate) == (1, 1, 1.0)
    assert (by_id["c"].graded, by_id["c"].rate) == (0, None)
    assert [c.case_id for c in s.cases][-2:] == ["b", "c"]   # no rate: last, in the case file's order


def test_mistakes_count_students_not_cases(klass):
    s = class_summary(klass, COLUMNS)
    [m] = s.mistakes
    assert (m.key, m.title, m.students, m.examples, m.kind) == ("no-scaling", SCALING, 2, ("bob", "cy"), "mistake")


def test_mistake_examples_are_three_and_titles_fall_back():
    rows = [row(f"s{i}", failed("b", 3, ("no-scaling",), 1), causes=(mistake_cause(1, ("b",)),)) for i in range(5)]
    rows.append(row("t0", failed("b", 3, ("softmax-dim", "no-scaling"), 0)))     # one of two: no single title
    rows.append(row("t1", failed("b", 3), causes=(mistake_cause(1, ("b",), "Known mistake: mask inverted"),)))
    s = class_summary(rows, COLUMNS)
    got = [(m.key, m.title, m.students, m.examples) for m in s.mistakes]
    assert got == [("no-scaling", SCALING, 6, ("s0", "s1", "s2")),
                   # a mistake cause whose cases carry no id (a trimmed report) counts by its title
                   ("Known mistake: mask inverted", "Known mistake: mask inverted", 1, ("t1",)),
                   ("softmax-dim", "softmax-dim", 1, ("t0",))]


def test_other_causes_by_title_top_five():
    rows = []
    for i in range(7):   # cause i is met by 7 - i students
        for j in range(7 - i):
            twice = (exception_cause(1, ("b",), f"Error {i}"), exception_cause(2, ("b",), f"Error {i}"))
            rows.append(row(f"s{i}-{j}", failed("b", 3, ref=1), causes=twice))
    s = class_summary(rows, COLUMNS)
    assert [(t.title, t.students, t.kind) for t in s.causes] == \
        [(f"Error {i}", 7 - i, "exception") for i in range(5)]  # the same title twice in a report: once
    assert s.causes[0].examples == ("s0-0", "s0-1", "s0-2")
    assert s.mistakes == ()


def test_histogram_bins_at_edges():
    bins = histogram([0, 0.1, 0.3, 0.7, 0.9999, 1.0, 1.5, -1], 1, 10)
    assert len(bins) == 10 and bins[0] == Bin(0, 0.1, 2)     # 0, and -1 clamped in
    assert [b.count for b in bins] == [2, 1, 0, 1, 0, 0, 0, 1, 0, 3]  # 0.3 lands in 0.3..0.4; 1.0 and 1.5 last
    assert bins[-1].high == 1 and bins[3].low == pytest.approx(0.3)
    assert sum(b.count for b in histogram([2.5] * 4 + [10], 10)) == 5
    assert histogram([], 0) == () and histogram([0, 0], 0) == (Bin(0, 0, 2),)


def test_histogram_bars_are_whole_points_wide_and_their_labels_short():
    bins = histogram([0, 2.5, 3, 27.5, 28], 28, 10)
    assert [(b.low, b.high) for b in bins] == [(3 * i, min(3 * i + 3, 28)) for i in range(10)]
    assert [b.count for b in bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    labels = re.findall(r">([^<>]*–[^<>]*)</text>", _histogram_svg(bins))
    assert labels[0] == "0–3" and labels[-1] == "27–28" and not any("." in x for x in labels)  # not 16.8–19.6


def test_histogram_of_a_class_uses_the_rows_max(klass):
    s = class_summary(klass, COLUMNS, bins=3)
    assert [(b.low, b.high, b.count) for b in s.histogram] == [(0, 2, 4), (2, 4, 0), (4, 6, 1)]


def test_runtimes(klass):
    rt = class_summary(klass, COLUMNS).runtimes
    # seconds: 0.1 0.2 1 2 3 30 (the internal row's time was spent too)
    assert (rt.median, rt.p90, rt.max) == (1.5, 30.0, 30.0)
    assert rt.slowest == (("dee", 30.0), ("cy", 3.0), ("bob", 2.0))
    ten = class_summary([row(f"s{i:02d}", passed("a", 1), seconds=float(i + 1)) for i in range(10)], COLUMNS)
    assert (ten.runtimes.median, ten.runtimes.p90, ten.runtimes.max) == (5.5, 9.0, 10.0)


def test_an_empty_class():
    s = class_summary([], COLUMNS)
    assert (s.students, s.scored, s.mean, s.median, s.min, s.max) == (0, 0, None, None, None, None)
    assert s.max_score == 6 and [b.count for b in s.histogram] == [0] * 6  # the columns' points, a bar per point
    assert [c.rate for c in s.cases] == [None, None, None]
    assert s.mistakes == () and s.causes == () and all(c.count == 0 for c in s.statuses)
    assert (s.runtimes.median, s.runtimes.p90, s.runtimes.max) == (None, None, None)
    assert class_summary([]).cases == ()        # no columns, no reports: no cases
    text = summary_text(s)
    assert "0 students" in text and all(len(line) <= 80 for line in text.splitlines())
    page = summary_html(s, "mha")
    assert "<script" not in page and "0 students" in page


def test_only_internal_rows():
    s = class_summary([internal("a"), internal("b", 2.0)], COLUMNS)
    assert s.students == 2 and s.scored == 0 and s.mean is None and s.status("internal") == 2
    assert all(c.graded == 0 for c in s.cases) and s.runtimes.max == 2.0
    summary_text(s)
    summary_html(s, "mha")


def test_columns_default_to_the_reports(klass):
    s = class_summary(klass)
    assert {c.case_id for c in s.cases} == {"a", "b", "c"}


# -- the text and the page ---------------------------------------------------------------------

def test_summary_text_reads_well_at_80_columns(klass):
    long = "x" * 300
    klass.append(row(long, failed("b", 3, ("no-scaling",), 1),
                     causes=(mistake_cause(1, ("b",), "Known mistake: " + long),)))
    klass.append(row("\x1b[31m" + HOSTILE, passed("a", 1), seconds=99.0))
    text = summary_text(class_summary(klass, (*COLUMNS, Column("d", "D " + long, 1))))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert all(line == line.rstrip() for line in lines)
    assert "\x1b" not in text and "\\x1b" in text
    assert "Pass rate per case (lowest first)" in text and "Recognised mistakes" in text
    assert re.search(r"25%\s+1/4\s+MHA: grads \(hidden\)", text)
    assert text.index("MHA: values") < text.index("MHA: grads") < text.index("SDPA: shapes")
    assert "e.g. bob, cy" in text and "timeout 1" in text and "internal 1" in text
    assert "90th percentile" in text and "Score histogram" in text


def test_summary_html_is_self_contained_and_escaped(klass):
    klass.append(row(HOSTILE, failed("b", 3, ("no-scaling",), 1),
                     causes=(mistake_cause(1, ("b",)), exception_cause(2, ("b",), "Error: </td><script>x</script>"))))
    klass.append(internal("<b>bold</b>"))
    page = summary_html(class_summary(klass, (*COLUMNS, Column("d", "<i>case</i>", 1))), "mha <script>")
    lower = page.lower()
    assert "<script" not in lower and "javascript:" not in lower
    assert not re.search(r"https?:|//[a-z]|url\(|@import|<link|<img|<iframe|<object", lower)
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "<i>case</i>" not in page and "&lt;i&gt;case&lt;/i&gt;" in page
    assert "<svg" in page and page.count("<rect") == 6  # max 6: a bar per point
    assert "Pass rate per case (lowest first)" in page and "Recognised mistakes" in page
    assert "90th percentile" in page and "unreadable" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_summary_html_lists_cases_lowest_first(klass):
    klass.append(row("zed", passed("a", 1), passed("b", 3), failed("c", 2)))   # c: 1/5, b: 2/5, a: 4/5
    page = summary_html(class_summary(klass, COLUMNS), "mha")
    assert page.index("MHA: grads") < page.index("MHA: values") < page.index("SDPA: shapes")
    assert "1/5" in page and "4/5" in page and "20%" in page


def test_the_workers_line_says_what_happened_not_what_was_planned():
    from grader.batch.insights import WorkersUsed, workers_lines
    from grader.execute.slots import SlotTally

    warm = SlotTally(zygotes_started=2, forks=8)
    assert workers_lines(WorkersUsed(8, 2, warm)) == [
        "workers: 2 warm slots, 2 zygotes started (torch imported once in each), 8 workers forked from them"]
    fell = SlotTally(2, 1, 7, 0, ("it never started: no answer within 120 s: ModuleNotFoundError: torch",))
    assert workers_lines(WorkersUsed(8, 2, fell)) == [
        "workers: 2 warm slots; 1 worker forked warm, 7 started cold instead (torch imported for each: slower)",
        "  why: it never started: no answer within 120 s: ModuleNotFoundError: torch"]
    split = SlotTally(zygotes_started=2, forks=16)  # hidden cases run in a worker of their own
    assert workers_lines(WorkersUsed(8, 2, split)) == [
        "workers: 2 warm slots, 2 zygotes started (torch imported once in each), 16 workers forked from them "
        "for 8 submissions"]
    replaced = SlotTally(3, 8, 0, 1, ("1 processes of the last run survived its clean-up",))
    assert workers_lines(WorkersUsed(8, 2, replaced))[0].endswith("; 1 zygote replaced after a run (3 started)")
    assert workers_lines(WorkersUsed(3, 0, cold_why="--cold was asked for")) == [
        "workers: a cold one per submission (torch imported for each): --cold was asked for"]
    assert workers_lines(WorkersUsed(0, 2, warm)) == []  # nothing graded in this run: nothing to say
    text = summary_text(class_summary([]), WorkersUsed(8, 2, fell))
    assert text.endswith("\nThis run: 8 graded\n" + "\n".join(workers_lines(WorkersUsed(8, 2, fell))) + "\n")


def test_slot_tallies_add_up_and_subtract_to_what_happened_since():
    from grader.execute.slots import SlotTally

    a = SlotTally(1, 3, 0, 0, ("x",))
    b = SlotTally(2, 5, 1, 1, ("x", "y"))
    assert a + b == SlotTally(3, 8, 1, 1, ("x", "y"))
    assert b - a == SlotTally(1, 2, 1, 1, ("y",))
    assert sum((SlotTally(1, 1, 0, 0, (str(i),)) for i in range(9)), SlotTally()).reasons == tuple("01234")


# -- similarity flags on the page, and mistakes by their declared names ------------------------

def _section(page: str, heading: str) -> str:
    """The part of ``page`` from the ``<h2>`` that starts with ``heading`` to the next ``<h2>``."""
    start = page.index(f"<h2>{heading}")
    end = page.find("<h2>", start + 4)
    return page[start:end if end >= 0 else len(page)]


def test_the_class_page_lists_similar_pairs_with_links_and_who_needs_attention(klass):
    from grader.batch.feedback import feedback_name
    from grader.batch.similarity import Flag

    flags = [Flag("bob", "cy", 0.93, 0.81), Flag("ada", "dee", 0.5, 0.88), Flag("cy", HOSTILE, 0.85, 0.84),
             Flag("ada", "fay", 0.81, 0.8)]
    klass.append(row(HOSTILE, passed("a", 1)))
    page = summary_html(class_summary(klass, COLUMNS), "mha", flags=flags)
    similar = _section(page, "Similar code (4 pairs)")
    # the pairs in the flags' order, each student with their share and a link to their feedback page
    cell = r"<td>(?:<a href='[^']*'>)?([^<]*)(?:</a>)?</td><td class='num'>(\d+%)</td>"
    assert re.findall(f"<tr>{cell}{cell}</tr>", similar) == [
        ("bob", "93%", "cy", "81%"), ("ada", "50%", "dee", "88%"), ("cy", "85%", html_escape(HOSTILE), "84%"),
        ("ada", "81%", "fay", "80%")]
    for sid in ("bob", "cy", "ada", "dee", HOSTILE):
        assert f"<a href='feedback/{html_escape(feedback_name(sid))}.html'>{html_escape(sid)}</a>" in similar, sid
    assert f"feedback/{feedback_name('fay')}" not in page  # the grader failed on fay: no feedback page to link
    assert HOSTILE not in page and "<script" not in page.lower()
    attention = _section(page, "Needs attention")
    assert attention.startswith("<h2>Needs attention (7 students)</h2>")  # dee, eve, fay, and bob, cy, ada, hostile
    reasons = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", attention))
    assert reasons["bob"] == "similar code: 93% shared with cy"
    assert reasons["cy"] == "similar code: 81% shared with bob, 85% with &lt;img src=x onerror=alert(1)&gt;"
    assert reasons["ada"] == "similar code: 50% shared with dee, 81% with fay"
    assert reasons["fay"] == "the grader failed: run again; similar code: 80% shared with ada"
    # one row per student: a status problem and a flag, joined
    assert reasons["dee"] == "ran out of time; similar code: 88% shared with ada"
    assert attention.count("<td>dee</td>") == 1 and "could not be read" in reasons["eve"]
    students = _section(page, "Students")
    assert "<tr class='trouble'><td>bob</td>" in students and "<tr><td>ada</td>" not in students


def test_similarity_not_computed_or_none_flagged_is_one_line(klass):
    from grader.batch.similarity import Flag

    s = class_summary(klass, COLUMNS)
    missing = summary_html(s, "mha", flags=None)
    assert missing.count("Similar code") == 1 and "not computed" in missing and "copydetect" in missing
    none = summary_html(s, "mha", flags=[])
    assert "not computed" not in none and "Similar code: none flagged" in none and "<h2>Similar code" not in none
    assert _section(none, "Needs attention").startswith("<h2>Needs attention (3 students)</h2>")
    text = summary_text(s, flags=[Flag("bob", "cy", 0.93, 0.81), Flag("ada", HOSTILE, 0.5, 0.9)])
    assert ("\nSimilar code (2 pairs; each one's share of code found in the other's)\n  bob (93%) and cy (81%)\n"
            "  ada (50%) and <img src=x onerror=aler… (90%)\n") in text  # ids shortened as elsewhere
    assert "Similar code" not in summary_text(s, flags=[])


def test_a_recognised_mistake_is_titled_by_its_declared_name(klass):
    from grader.spec.mistakes import Mistake

    known = {"no-scaling": Mistake("no-scaling", "scores not scaled", "Divide by √d_K.", (("a", "b", 1),), None, 0.5),
             "softmax-dim": Mistake("softmax-dim", "softmax over the wrong dimension", "", (("a", "b", 1),))}
    klass.append(row("t0", failed("b", 3, ("softmax-dim",), 1), causes=(mistake_cause(1, ("b",), "Known mistake: x"),)))
    klass.append(row("t1", failed("b", 3, ("unknown-id",), 1), causes=(mistake_cause(1, ("b",), "Known mistake: y"),)))
    s = class_summary(klass, COLUMNS, mistakes=known)
    assert [(m.key, m.title, m.students) for m in s.mistakes] == [
        ("no-scaling", "scores not scaled (partial credit: 50%)", 2),
        ("unknown-id", "Known mistake: y", 1),                        # not declared: the report's title
        ("softmax-dim", "softmax over the wrong dimension", 1)]
    page = summary_html(s, "mha")
    mistakes = _section(page, "Recognised mistakes")
    assert "<td>scores not scaled (partial credit: 50%)</td>" in mistakes and "Known mistake: scores" not in mistakes
    assert "\n     2  scores not scaled (partial credit: 50%)\n" in summary_text(s)
    assert class_summary(klass, COLUMNS).mistakes[0].title == SCALING      # no mapping: as before
