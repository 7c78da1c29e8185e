"""The class in numbers (grader.batch.insights): what ``class_summary`` counts from stored results.

The rows built here (``row``, ``a_class``, …) serve the class page's tests too (test_class_page.py,
test_class_page_browser.py)."""
from __future__ import annotations

import pytest

from grader.batch.gradebook import Column
from grader.batch.insights import Bin, class_summary, histogram
from grader.batch.store import StoredResult
from grader.model.outcomes import WrongAnswer
from grader.model.result import CaseResult, CauseSummary, Report
from grader.spec.mistakes import Mistake

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
                      cause=WrongAnswer(), cause_ref=ref)


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


#: the assignment's declared mistakes, one with partial credit
KNOWN = {"no-scaling": Mistake("no-scaling", "scores not scaled", "Divide by √d_K.", (("a", "b", 1),), None, 0.5),
         "softmax-dim": Mistake("softmax-dim", "softmax over the wrong dimension", "", (("a", "b", 1),))}


def with_declared_mistakes(rows: list[StoredResult]) -> list[StoredResult]:
    """``rows`` and two students more: one with a mistake ``KNOWN`` declares, one with a mistake it does not."""
    rows.append(row("t0", failed("b", 3, ("softmax-dim",), 1), causes=(mistake_cause(1, ("b",), "Known mistake: x"),)))
    rows.append(row("t1", failed("b", 3, ("unknown-id",), 1), causes=(mistake_cause(1, ("b",), "Known mistake: y"),)))
    return rows


def a_class() -> list[StoredResult]:
    """Six students: all passed, a mistake, a mistake and a crash, a timeout, an unreadable file, the grader's
    failure."""
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


@pytest.fixture
def klass() -> list[StoredResult]:
    return a_class()


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
    assert s.ungraded == 2                                    # eve and fay: no case graded


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


def test_only_internal_rows():
    s = class_summary([internal("a"), internal("b", 2.0)], COLUMNS)
    assert s.students == 2 and s.scored == 0 and s.mean is None and s.status("internal") == 2
    assert all(c.graded == 0 for c in s.cases) and s.runtimes.max == 2.0


def test_columns_default_to_the_reports(klass):
    s = class_summary(klass)
    assert {c.case_id for c in s.cases} == {"a", "b", "c"}


def test_slot_tallies_add_up_and_subtract_to_what_happened_since():
    from grader.execute.slots import SlotTally

    a = SlotTally(1, 3, 0, 0, ("x",))
    b = SlotTally(2, 5, 1, 1, ("x", "y"))
    assert a + b == SlotTally(3, 8, 1, 1, ("x", "y"))
    assert b - a == SlotTally(1, 2, 1, 1, ("y",))
    assert sum((SlotTally(1, 1, 0, 0, (str(i),)) for i in range(9)), SlotTally()).reasons == tuple("01234")


def test_a_recognised_mistake_is_titled_by_its_declared_name(klass):
    s = class_summary(with_declared_mistakes(klass), COLUMNS, mistakes=KNOWN)
    assert [(m.key, m.title, m.students) for m in s.mistakes] == [
        ("no-scaling", "scores not scaled (partial credit: 50%)", 2),
        ("unknown-id", "Known mistake: y", 1),                        # not declared: the report's title
        ("softmax-dim", "softmax over the wrong dimension", 1)]
    assert class_summary(klass, COLUMNS).mistakes[0].title == SCALING      # no mapping: as before
