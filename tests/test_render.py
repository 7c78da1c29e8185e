"""Rendering: every format from one report, compared as exact text."""
from __future__ import annotations

import json

from grader.report.render import render
from grader.report.result import CaseResult, Report

REPORT = Report("s.ipynb", "mha", (
    CaseResult("a", "SDPA: shapes", "SDPA", "passed", 1, 1),
    CaseResult("b", "MHA: values", "MHA", "failed", 0, 3, "`scores` differs: 0.5× expected",
                "`x` differs\nHint: divide by √d_head."),
    CaseResult("c", "MHA: grads", "MHA", "error", 0, 2, "RuntimeError in cell 7, line 3 (forward): boom",
                "cell 7, line 3, in forward\n    y = x @ w", "hidden"),
), None, ("cell 9, line 1: SyntaxError",), "subprocess", 1.25)

RICH = """\
Grading s.ipynb  assignment: mha
note: cell 9, line 1: SyntaxError
┏━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ Check        ┃ Points ┃ Status ┃ Reason                                         ┃
┡━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ SDPA: shapes │    1/1 │ PASS   │                                                │
│ MHA: values  │    0/3 │ FAIL   │ `scores` differs: 0.5× expected                │
│ MHA: grads   │    0/2 │ ERROR  │ RuntimeError in cell 7, line 3 (forward): boom │
├──────────────┼────────┼────────┼────────────────────────────────────────────────┤
│ Total        │    1/6 │        │                                                │
└──────────────┴────────┴────────┴────────────────────────────────────────────────┘
Details
• MHA: values
    `x` differs
    Hint: divide by √d_head.
• MHA: grads
    cell 7, line 3, in forward
        y = x @ w
isolation: subprocess · 1.2 s
"""


def test_rich_text():
    assert render(REPORT, "rich") == RICH


def test_gradescope():
    data = json.loads(render(REPORT, "gradescope"))
    assert data == {
        "score": 1, "max_score": 6, "output": "cell 9, line 1: SyntaxError\nIsolation: subprocess",
        "execution_time": 1.25,
        "tests": [
            {"name": "SDPA: shapes", "score": 1, "max_score": 1, "status": "passed", "output": "",
             "visibility": "visible"},
            {"name": "MHA: values", "score": 0, "max_score": 3, "status": "failed",
             "output": "`scores` differs: 0.5× expected\n`x` differs\nHint: divide by √d_head.",
             "visibility": "visible"},
            {"name": "MHA: grads", "score": 0, "max_score": 2, "status": "failed",
             "output": "RuntimeError in cell 7, line 3 (forward): boom\ncell 7, line 3, in forward\n    y = x @ w",
             "visibility": "hidden"},
        ]}


def test_unreadable_gradescope():
    r = Report("x.ipynb", "mha", (), "x.ipynb is empty (0 bytes)", declared_max_score=26)
    data = json.loads(render(r, "gradescope"))
    assert (data["score"], data["max_score"], data["tests"]) == (0, 26, [])
    assert data["output"].startswith("Could not grade this submission: x.ipynb is empty")


def test_junit():
    assert render(REPORT, "junit") == """\
<?xml version="1.0" encoding="utf-8"?>
<testsuite name="mha" tests="3" failures="1" skipped="0" errors="1" time="1.250">
  <properties>
    <property name="submission" value="s.ipynb" />
    <property name="score" value="1" />
    <property name="max_score" value="6" />
    <property name="isolation" value="subprocess" />
  </properties>
  <testcase classname="SDPA" name="SDPA: shapes" time="0.000" />
  <testcase classname="MHA" name="MHA: values" time="0.000">
    <failure message="`scores` differs: 0.5× expected">`scores` differs: 0.5× expected
`x` differs
Hint: divide by √d_head.</failure>
  </testcase>
  <testcase classname="MHA" name="MHA: grads" time="0.000">
    <error message="RuntimeError in cell 7, line 3 (forward): boom">RuntimeError in cell 7, line 3 (forward): boom
cell 7, line 3, in forward
    y = x @ w</error>
  </testcase>
  <system-out>cell 9, line 1: SyntaxError</system-out>
</testsuite>
"""


def test_csv():
    assert render(REPORT, "csv") == (
        "submission,assignment,case_id,name,status,score,max_score,reason\n"
        "s.ipynb,mha,a,SDPA: shapes,passed,1,1,\n"
        "s.ipynb,mha,b,MHA: values,failed,0,3,`scores` differs: 0.5× expected\n"
        's.ipynb,mha,c,MHA: grads,error,0,2,"RuntimeError in cell 7, line 3 (forward): boom"\n')


def test_json_round_trips():
    data = json.loads(render(REPORT, "json"))
    assert data["score"] == 1 and data["max_score"] == 6
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
