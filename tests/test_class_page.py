"""The class page (grader.batch.class_page): class.txt and class.html, worded and drawn from a ``ClassSummary``.

The classes are built from stored results by test_batch_insights.py's helpers; the page's layout in a browser
is test_class_page_browser.py's.
"""
from __future__ import annotations

import re
from html import escape as html_escape

import pytest

from grader.batch.class_page import histogram_svg, summary_html, summary_text, workers_lines
from grader.batch.gradebook import Column
from grader.batch.insights import WorkersUsed, class_summary, histogram
from grader.batch.store import StoredResult
from test_batch_insights import (
    COLUMNS,
    HOSTILE,
    KNOWN,
    a_class,
    exception_cause,
    failed,
    internal,
    mistake_cause,
    passed,
    row,
    with_declared_mistakes,
)


@pytest.fixture
def klass() -> list[StoredResult]:
    return a_class()


def test_histogram_labels_are_short_when_bars_are_whole_points_wide():
    labels = re.findall(r">([^<>]*–[^<>]*)</text>", histogram_svg(histogram([0, 2.5, 3, 27.5, 28], 28, 10)))
    assert labels[0] == "0–3" and labels[-1] == "27–28" and not any("." in x for x in labels)  # not 16.8–19.6


def test_an_empty_class():
    s = class_summary([], COLUMNS)
    text = summary_text(s)
    assert "0 students" in text and all(len(line) <= 80 for line in text.splitlines())
    page = summary_html(s, "mha")
    assert "<script" not in page and "0 students" in page


def test_only_internal_rows():
    s = class_summary([internal("a"), internal("b", 2.0)], COLUMNS)
    summary_text(s)
    summary_html(s, "mha")


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


def test_a_recognised_mistake_is_shown_by_its_declared_name(klass):
    s = class_summary(with_declared_mistakes(klass), COLUMNS, mistakes=KNOWN)
    page = summary_html(s, "mha")
    mistakes = _section(page, "Recognised mistakes")
    assert "<td>scores not scaled (partial credit: 50%)</td>" in mistakes and "Known mistake: scores" not in mistakes
    assert "\n     2  scores not scaled (partial credit: 50%)\n" in summary_text(s)
