"""Rendering: the model round-trips, and text from a submission is inert in every format.

The exact text of every format is in tests/golden/ (test_golden.py).
"""
from __future__ import annotations

import json

from grader.report.render import render
from grader.model.result import CaseResult, Report
from golden_reports import SAMPLE as REPORT

def test_unreadable_gradescope():
    r = Report("x.ipynb", "mha", (), "x.ipynb is empty (0 bytes)", declared_max_score=26)
    data = json.loads(render(r, "gradescope"))
    assert (data["score"], data["max_score"], data["tests"]) == (0, 26, [])
    assert data["output"].startswith("Could not grade this submission: x.ipynb is empty")


def test_to_dict_is_asdict_without_the_copies():
    """``Report.to_dict`` builds its plain values itself (``dataclasses.asdict`` deep-copied every number of
    every figure): the same values and types (facts tagged with their kind), and nothing shared with the
    report that could be changed."""
    import dataclasses

    figure = {"kind": "attention", "weights": [[[0.25, 0.75], [1.0, 0.0]]], "mask": [[1, 0]], "title": "x"}
    case = dataclasses.replace(REPORT.cases[1], figures=(figure,))
    report = dataclasses.replace(REPORT, cases=(case, *REPORT.cases[2:]))
    d = report.to_dict()
    expected = {**dataclasses.asdict(report), "notes": list(report.notes),
                "instructor_notes": list(report.instructor_notes)}
    for c, plain in zip(report.cases, expected["cases"]):
        plain.update(cause=c.cause.to_dict() if c.cause else None, problems=tuple(p.to_dict() for p in c.problems))
    assert {k: d[k] for k in expected} == expected
    assert type(d["cases"]) is type(expected["cases"]) and type(d["cases"][0]["figures"]) is tuple
    d["cases"][0]["figures"][0]["weights"][0][0][0] = 9.0
    assert figure["weights"][0][0][0] == 0.25


def test_json_round_trips():
    data = json.loads(render(REPORT, "json"))
    assert data["score"] == 2.5 and data["max_score"] == 8 and data["pending_points"] == 2
    assert Report.from_dict(data) == REPORT


# --- text from a submission can neither paint the terminal, nor inject markup, nor break a format

FORGED = ("\x1b[2J\x1b[32m28/28 PASS\x1b[0m\r[bold green]PASS[/] [/] [link=https://evil.example]x[/link] "
          "\x00\x07 \u202eSSAP \ud800 \ufffe")
FORGED_REPORT = Report(f"=HYPERLINK(\"https://evil.example\"){FORGED}.py", "mha", (
    CaseResult("a", f"name {FORGED}", "MHA", "error", 0, 1, f"ValueError — {FORGED}", f"details {FORGED}\nline 2"),
), None, (f"note {FORGED}",), "subprocess", 1.0)


def test_student_text_is_inert_in_every_format():
    import csv
    import io
    import xml.etree.ElementTree as ET

    rich = render(FORGED_REPORT, "rich")
    assert not {c for c in rich if ord(c) < 32 and c != "\n"}  # no terminal control character survives
    assert "\\x1b[2J" in rich and "[bold green]PASS[/]" in rich and "[link=https://evil.example]" in rich
    assert "\u202e" not in rich and "\\u202e" in rich
    suite = ET.fromstring(render(FORGED_REPORT, "junit").split("\n", 1)[1])  # well-formed XML
    assert "\\x1b" in suite.find("testcase/error").get("message")
    rows = list(csv.reader(io.StringIO(render(FORGED_REPORT, "csv"))))
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in row if not cell[:1].isdigit())
    assert rows[1][0].startswith("'=HYPERLINK")
    data = json.loads(render(FORGED_REPORT, "gradescope"))
    assert "\x1b" not in json.dumps(data, ensure_ascii=False)
    html_page = render(FORGED_REPORT, "html")
    assert "<link" not in html_page and "\x1b" not in html_page
