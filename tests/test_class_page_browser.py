"""class.html (grader.batch.class_page.summary_html) as Chromium lays it out: what a TA sees, not only its text.

A class is built from stored results here (no grading); its page is opened in the system's headless
Chromium (tests/browser.py) at a wide and a narrow window, and measured: histogram labels apart and
inside their drawing, every table inside the window, a row per student, the similar pairs, a screenshot
that shows the page, no script and nothing fetched.
"""
from __future__ import annotations

import dataclasses
import io
from html import escape

import pytest

from browser import browser, needs_browser
from grader.batch.class_page import summary_html
from grader.batch.insights import class_summary
from grader.batch.similarity import Flag
from grader.batch.store import Handed, StoredResult
from test_batch_insights import COLUMNS, HOSTILE, exception_cause, failed, internal, mistake_cause, passed, row

pytestmark = needs_browser

#: an id as an LMS export may give it: long, and no place to break a line
LONG = "firstname.middlename.lastname.2024@students.example-university.edu"
WIDTHS = (1280, 800)
FLAGS = [Flag("bob", "cy", 0.93, 0.81), Flag("ada", LONG, 0.5, 0.88), Flag("cy", HOSTILE, 0.85, 0.84)]
#: maximum scores whose bars have short labels (0–3), long ones (11.25–12.5, 29.97–33.3), and a few bars
TOPS = (28, 12.5, 33.3, 1, 100, 3)
SELECTORS = ("svg.hist", "svg.hist text", "table", "table.students tbody tr", "table.attention tbody tr",
             "table.similar tbody tr", "table.students span.late",
             "table.students span.meta")


def the_class() -> list[StoredResult]:
    mistaken = (failed("b", 3, ("no-scaling",), 1), failed("c", 2, ("no-scaling",), 1))
    rows = [row("ada", passed("a", 1), passed("b", 3), passed("c", 2)),
            row("bob", passed("a", 1), *mistaken, causes=(mistake_cause(1, ("b", "c")),)),
            row("cy", passed("a", 1), failed("b", 3, ("no-scaling",), 1), failed("c", 2, (), 2, "error"),
                causes=(mistake_cause(1, ("b",)), exception_cause(2, ("c",), "RuntimeError in forward: " + "x" * 300))),
            row("dee", failed("a", 1, (), 1, "error"), failed("b", 3, (), 1, "error"), failed("c", 2, (), 1, "error"),
                causes=(exception_cause(1, ("a", "b", "c"), "Timed out"),), status="timeout", seconds=30.0),
            row("eve", problem="not a notebook", declared=6, status="unreadable"),
            internal("fay"),
            row(LONG, passed("a", 1), *mistaken, causes=(mistake_cause(1, ("b", "c")),)),
            row(HOSTILE, passed("a", 1), passed("b", 3), failed("c", 2, (), 1), causes=(exception_cause(1, ("c",)),))]
    rows[6] = dataclasses.replace(rows[6], handed=Handed.of(f"{LONG}_late_77_9001_mha-3.ipynb", True, 3,
                                                          tuple(f"{LONG}_77_900{i}_mha-{i}.ipynb" for i in range(3))))
    rows[1] = dataclasses.replace(rows[1], handed=Handed("bob_late_12_5_mha.ipynb", late=True))
    return rows + [row(f"s{i:02d}", passed("a", 1), passed("b", 3) if i % 2 else failed("b", 3)) for i in range(12)]


@pytest.fixture(scope="module")
def tab():
    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def opened(tab, tmp_path_factory):
    """The class page and one histogram per maximum score, each opened once, by (page, width)."""
    folder = tmp_path_factory.mktemp("class-page")
    rows = the_class()
    pages = {"class": summary_html(class_summary(rows, COLUMNS), "mha", flags=FLAGS)}
    for top in TOPS:
        scores = [StoredResult(f"s{i}", "", "0" * 64, "k", "graded", top * i / 9, top, 1.0, None) for i in range(10)]
        pages[top] = summary_html(class_summary(scores), "mha", flags=[])
    got = {}
    for name, text in pages.items():
        path = folder / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        for width in WIDTHS:
            got[name, width] = tab.open(path, SELECTORS, width=width, screenshot=name == "class")
    return rows, got


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("top", ["class", *TOPS])
def test_histogram_labels_neither_overlap_nor_are_cut_off(opened, top, width):
    page = opened[1][top, width]
    [svg] = page.boxes["svg.hist"]
    texts = page.boxes["svg.hist text"]
    labels = [t for t in texts if "–" in t.text]
    assert len(labels) >= 3 and all(t.width > 0 for t in labels)
    for left, right in zip(labels, labels[1:]):
        assert left.right <= right.left, f"{left.text!r} runs into {right.text!r}"
    for t in texts:  # the counts above the bars too
        assert t.inside(svg), f"{t.text!r} is cut off: {t} outside {svg}"
    assert svg.right <= page.client_width and page.scroll_width <= page.client_width


@pytest.mark.parametrize("width", WIDTHS)
def test_the_tables_fit_the_window_and_list_every_student(opened, width):
    rows, got = opened
    page = got["class", width]
    assert page.client_width == width and page.scroll_width <= page.client_width, "the page scrolls sideways"
    tables = page.boxes["table"]
    assert len(tables) >= 5
    for t in tables:
        assert t.width > 0 and t.height > 0 and t.left >= 0 and t.right <= page.client_width, t
    students = page.boxes["table.students tbody tr"]
    shown = [r.text for r in students]
    assert len(students) == len(rows) and all(r.height > 0 and r.right <= width for r in students)
    for r in rows:
        assert sum(text.startswith(r.student_id) for text in shown) == 1, r.student_id
    attention = [r.text for r in page.boxes["table.attention tbody tr"]]
    # a status problem or a flag: dee, eve, fay; bob, cy, ada, the long id and the hostile one
    assert len(attention) == 8 and all(r.height > 0 for r in page.boxes["table.attention tbody tr"])
    assert any(t.startswith("dee") and "ran out of time" in t for t in attention)
    assert any(t.startswith(LONG) and "similar code: 88% shared with ada" in t for t in attention)
    # the late badges (bob, the long id) are drawn inside their rows, the long file names wrapped
    late = page.boxes["table.students span.late"]
    assert len(late) == 2 and all(b.width > 0 and b.right <= width for b in late)
    notes = [b.text for b in page.boxes["table.students span.meta"] if b.width > 0 and b.right <= width]
    assert notes == ["resubmission 3 · 3 other files not graded"], notes


def test_the_similar_pairs_are_listed_in_order(opened):
    page = opened[1]["class", 1280]
    pairs = page.boxes["table.similar tbody tr"]
    assert [p.text for p in pairs] == [f"{f.student_a}{f.similarity_a:.0%}{f.student_b}{f.similarity_b:.0%}"
                                       for f in FLAGS]
    assert all(p.height > 0 and p.right <= page.client_width for p in pairs)


def test_a_screenshot_shows_the_page_with_no_script_and_nothing_fetched(opened):
    Image = pytest.importorskip("PIL.Image")
    for width in WIDTHS:
        page = opened[1]["class", width]
        assert page.scripts == 0 and page.fetched == ()
        shot = Image.open(io.BytesIO(page.png)).convert("RGB")
        assert shot.width == width and shot.height >= page.boxes["table.students tbody tr"][-1].bottom
        colours = shot.getcolors(maxcolors=1 << 20)
        assert colours and len(colours) > 20, "a blank screenshot"
        [svg] = page.boxes["svg.hist"]
        bars = shot.crop((int(svg.left), int(svg.top), int(svg.right), int(svg.bottom)))
        blue = sum(n for n, (r, g, b) in bars.getcolors(maxcolors=1 << 20) if (r, g, b) == (0x09, 0x69, 0xDA))
        assert blue > 500, "the histogram's bars are not drawn where its box is"


def test_the_page_escapes_ids_the_browser_would_run(opened):
    page = opened[1]["class", 1280]
    assert any(HOSTILE in r.text for r in page.boxes["table.students tbody tr"])  # shown as text, not an element
    assert escape(HOSTILE) not in "".join(r.text for r in page.boxes["table.students tbody tr"])


def test_the_browser_sees_what_these_checks_look_for(tab, tmp_path):
    """The measures above can fail: a script, a fetch, a page too wide and overlapping labels are seen."""
    path = tmp_path / "bad.html"
    path.write_text("<body style='margin:0'><img src='http://example.invalid/x.png'><div onclick='x()'></div>"
                    "<script>1</script><div style='width:2000px'>wide</div><svg width='60' height='20'>"
                    "<text x='0' y='15'>0–100</text><text x='30' y='15'>100–200</text></svg></body>")
    page = tab.open(path, ["svg", "svg text"], width=800, screenshot=False)
    assert page.scripts == 2 and page.fetched == ("http://example.invalid/x.png",) and page.png == b""
    assert page.scroll_width == 2000 > page.client_width == 800
    first, second = page.boxes["svg text"]
    assert first.right > second.left and not second.inside(page.boxes["svg"][0])
