"""Behaviour as data: every submission in tests/submissions/ against its expected outcome.

Each entry of expected.toml names the cases that must fail or error (all others must
pass), the causes the report leads with, and the cases that show their hint. This is how we prove the reference gets full marks, each template gets 0 without
a traceback, correct variants in other styles get full marks, and each known bug loses
points on exactly the cases it should.
"""
from __future__ import annotations

import re

import tomllib

import pytest

from conftest import ROOT, SUBMISSIONS
from golden_compare import text_differences
from grader import GradeConfig, grade_submission
from grader.spec.mistakes import load_mistakes
from grader.report.render import render

EXPECTED = tomllib.loads((SUBMISSIONS / "expected.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def slot():
    """One warm slot for the whole corpus where bubblewrap runs (as ``grade batch`` grades): every
    expectation must hold for a forked worker; the cold path is graded by the golden and CLI tests."""
    from grader.execute.sandbox import resolve_mode
    from grader.execute.slots import WarmSlot

    if resolve_mode(None) != "bwrap":
        yield None
        return
    with WarmSlot("bwrap", GradeConfig().limits) as warm:
        yield warm


def test_every_submission_has_an_expectation():
    files = {str(p.relative_to(ROOT)) for p in SUBMISSIONS.rglob("*") if p.suffix in (".py", ".ipynb")
             and p.parent != SUBMISSIONS}
    missing = sorted(files - set(EXPECTED))
    assert not missing, f"add these to tests/submissions/expected.toml: {missing}"


@pytest.mark.parametrize("relpath", sorted(EXPECTED))
def test_submission_outcome(relpath, slot):
    spec = EXPECTED[relpath]
    config = GradeConfig(case_timeout=spec["case_timeout"]) if "case_timeout" in spec else None
    fallbacks = slot.fallbacks if slot is not None else 0
    report = grade_submission(ROOT / relpath, config, slot)
    assert report.problem is None
    # graded in a worker forked from the slot, as grade batch grades it, not in a cold fallback
    assert slot is None or slot.fallbacks == fallbacks, slot.tally().reasons
    statuses = {c.case_id: c.status for c in report.cases}
    if spec.get("all"):
        expected = {cid: spec["all"] for cid in statuses}
    else:
        unknown = set(spec.get("failed", [])) | set(spec.get("errors", []))
        assert unknown <= set(statuses), f"expected.toml names unknown cases: {unknown - set(statuses)}"
        expected = {cid: "passed" for cid in statuses}
        expected.update({cid: "failed" for cid in spec.get("failed", [])})
        expected.update({cid: "error" for cid in spec.get("errors", [])})
    wrong = {cid: f"{statuses[cid]} (expected {expected[cid]}): "
                  f"{next(c.reason for c in report.cases if c.case_id == cid)}"
             for cid in statuses if statuses[cid] != expected[cid]}
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert report.score == sum(c.max_score for c in report.cases if c.status == "passed")
    _check_diagnosis(relpath, spec, report)
    _check_causes(relpath, spec, report)
    text = render(report, "rich")
    assert "Traceback" not in text and not names_grader_source(text), text
    for c in report.cases:
        if c.status != "passed":
            assert c.reason, f"{c.case_id} lost points without a reason"


#: A path into the grader's own package (a traceback of ours leaking into a report), wherever the
#: checkout lives, whatever its folder is called (a checkout named ``grader`` puts "grader/" in every
#: submission's path, which the report prints).
_GRADER_SOURCE = re.compile(r"grader/(?:" + "|".join(
    sorted(p.name for p in (ROOT / "grader").iterdir() if p.is_dir() and not p.name.startswith("_"))) + r"|\w+\.py\b)")


def names_grader_source(text: str) -> bool:
    """True when ``text`` names a file or folder of the grader's package."""
    return bool(_GRADER_SOURCE.search(text))


def test_a_checkout_named_grader_is_not_the_graders_source():
    assert not names_grader_source("Grading /home/ta/grader/tests/submissions/mha/filled.ipynb · course: /home/ta/grader")
    assert names_grader_source('File "/home/ta/grader/grader/execute/worker.py", line 3')
    assert names_grader_source("grader/pipeline.py")


def _check_diagnosis(relpath, spec, report):
    """Each known mistake is named in every case it fails, by its own name; nothing else is named."""
    named = [c for c in report.cases if c.reason.startswith("Known mistake")]
    if "mistake" not in spec:
        assert named == [], f"{relpath} got a diagnosis: {named[0].reason}"
        return
    mistakes = {m.id: m for m in load_mistakes(ROOT / "assignments" / report.assignment)}
    expected = f"Known mistake: {mistakes[spec['mistake']].name}."
    lost = [c for c in report.cases if c.status in ("failed", "error")]
    assert lost and all(c.reason.startswith(expected) for c in lost), \
        [(c.case_id, c.reason) for c in lost if not c.reason.startswith(expected)]


def _check_causes(relpath, spec, report):
    """The report leads with the expected causes, each once; only the expected cases show their hint."""
    titles = [c.title for c in report.causes]
    if "causes" in spec:
        expected = spec["causes"]
    elif "mistake" in spec:
        expected = [f"Known mistake: {m.name}" for m in load_mistakes(ROOT / "assignments" / report.assignment)
                    if m.id == spec["mistake"]]
    elif spec.get("all") == "error":  # an untouched template: each graded class, once, not implemented
        expected = [f"{t} is not implemented yet" for t in dict.fromkeys(c.target for c in report.cases)]
    else:
        expected = []
    assert len(titles) == len(expected) and not any(text_differences(e, t) for e, t in zip(expected, titles)), \
        f"{relpath}: causes {titles}"  # numbers to their last printed digit, which changes from CPU to CPU
    lost = [c for c in report.cases if c.status in ("failed", "error")]
    assert all(c.cause_ref for c in lost) and not any(c.cause_ref for c in report.cases if c not in lost)
    assert sum(c.points_lost for c in report.causes) == report.max_score - report.score
    hinted = sorted(c.case_id for c in report.cases if c.hint)
    assert hinted == sorted(spec.get("hinted", [])), f"{relpath}: hints shown in {hinted}"


def test_every_declared_mistake_has_a_submission():
    declared = {m.id for name in ("mha", "lstm") for m in load_mistakes(ROOT / "assignments" / name)}
    covered = {spec["mistake"] for spec in EXPECTED.values() if "mistake" in spec}
    assert declared == covered, f"mistakes without a submission: {declared - covered}"
