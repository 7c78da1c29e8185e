"""Rendering a ``Report``: a rich table for people; JSON, Gradescope JSON, JUnit XML, CSV for machines.

The result model knows nothing of presentation; everything about looks lives here. Text in
the model is already safe (``grader.report.text``); renderers never parse it as markup:
rich gets ``Text`` objects, never markup strings.
"""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from grader.report.messages import points as _points
from grader.report.result import CaseResult, Report
from grader.report.text import spreadsheet_safe

FORMATS = ("rich", "json", "gradescope", "junit", "csv", "html")
_STATUS_STYLE = {"passed": ("PASS", "bold green"), "failed": ("FAIL", "bold red"), "error": ("ERROR", "bold yellow"),
                 "pending": ("LATER", "dim")}


def render(report: Report, fmt: str) -> str:
    """The report as text in ``fmt`` (rich is rendered without colour, at 100 columns)."""
    if fmt == "rich":
        return render_rich_text(report)
    if fmt not in FORMATS:
        raise ValueError(f"invalid format {fmt!r}, expected one of {', '.join(FORMATS)}")
    if fmt == "html":
        from grader.report.html import to_html
        return to_html(report)
    return {"json": to_json, "gradescope": to_gradescope, "junit": to_junit, "csv": to_csv}[fmt](report)


def rich_renderable(report: Report) -> Any:
    """A rich renderable of the report: header, notes, a table of checks, the total, and why."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    title = Text.assemble(("Grading ", "bold"), (report.submission, "bold cyan"))
    if report.assignment:
        title.append(f"  assignment: {report.assignment}")
    parts.append(title)
    if report.problem:
        parts.append(Text.assemble(("Could not grade: ", "bold red"), Text(report.problem)))
    for note in report.notes:
        parts.append(Text.assemble(("note: ", "yellow"), Text(note)))
    if report.cases:
        table = Table(show_header=True, header_style="bold", expand=False, show_lines=False)
        table.add_column("Check", overflow="fold", ratio=3)
        table.add_column("Points", justify="right", no_wrap=True)
        table.add_column("Status", no_wrap=True)
        table.add_column("Reason", overflow="fold", ratio=4)
        for c in report.cases:
            label, style = _STATUS_STYLE[c.status]
            table.add_row(Text(c.name), Text(f"{_points(c.score)}/{_points(c.max_score)}"), Text(label, style=style),
                          Text(c.reason))
        table.add_section()
        label = "Total, public cases only" if report.local else "Total"
        table.add_row(Text(label, style="bold"), Text(f"{_points(report.score)}/{_points(report.max_score)}",
                                                      style="bold"), Text(""), Text(""))
        if report.pending_points:
            table.add_row(Text("Hidden cases"), Text(f"?/{_points(report.pending_points)}"), Text(""),
                          Text("graded after you submit; not included in the total above"))
        parts.append(table)
    else:
        parts.append(Text(f"Total: {_points(report.score)}/{_points(report.max_score)}", style="bold"))
    groups: dict[str, list[str]] = {}  # identical details are shown once, under every name they concern
    for c in report.cases:
        if c.status not in ("passed", "pending") and c.details:
            groups.setdefault(c.details, []).append(c.name)
    if groups:
        parts.append(Text("Details", style="bold"))
        for extra, names in groups.items():
            heading = Text()
            for i, name in enumerate(names):
                heading.append(("\n" if i else "") + "• ", "bold").append(name, "bold")
            parts.append(Text.assemble(heading, "\n", Text(_indent(extra))))
    footer = f"isolation: {report.isolation}" if report.isolation else ""
    if report.execution_time:
        footer += f"{' · ' if footer else ''}{report.execution_time:.1f} s"
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def render_rich_text(report: Report, width: int = 100) -> str:
    """The rich view as plain text (for files and tests)."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False).print(
        rich_renderable(report))
    return buf.getvalue()


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def to_json(report: Report) -> str:
    """The plain result model as JSON."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _test_output(c: CaseResult) -> str:
    return f"{c.reason}\n{c.details}" if c.reason and c.details else (c.reason or c.details)


def to_gradescope(report: Report) -> str:
    """Gradescope's results.json: score, max_score, output, execution_time, tests."""
    output = []
    if report.problem:
        output.append(f"Could not grade this submission: {report.problem}")
    output += list(report.notes)
    if report.isolation:
        output.append(f"Isolation: {report.isolation}")
    data = {
        "score": report.score,
        "max_score": report.max_score,
        "output": "\n".join(output),
        "execution_time": round(report.execution_time, 3),
        "tests": [
            {"name": c.name, "score": c.score, "max_score": c.max_score,
             "status": "passed" if c.status == "passed" else "failed",
             "output": _test_output(c), "visibility": c.visibility}
            for c in report.cases if c.status != "pending"
        ],
    }
    if report.pending_points:
        data["output"] += (f"\nLocal check: {_points(report.pending_points)} points in hidden cases are graded "
                           "after submission and are not included.")
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_junit(report: Report) -> str:
    """JUnit XML: one testsuite, one testcase per case; failures and errors kept apart."""
    suite = ET.Element("testsuite", {
        "name": report.assignment or "submission",
        "tests": str(max(len(report.cases), 1 if report.problem else 0)),
        "failures": str(sum(c.status == "failed" for c in report.cases)),
        "skipped": str(sum(c.status == "pending" for c in report.cases)),
        "errors": str(sum(c.status == "error" for c in report.cases) + (1 if report.problem else 0)),
        "time": f"{report.execution_time:.3f}",
    })
    ET.SubElement(suite, "properties")
    props = suite.find("properties")
    for k, v in (("submission", report.submission), ("score", _points(report.score)),
                 ("max_score", _points(report.max_score)), ("isolation", report.isolation)):
        ET.SubElement(props, "property", {"name": k, "value": v})
    if report.problem:
        tc = ET.SubElement(suite, "testcase", {"classname": "submission", "name": "read submission", "time": "0"})
        ET.SubElement(tc, "error", {"message": report.problem}).text = report.problem
    for c in report.cases:
        tc = ET.SubElement(suite, "testcase", {"classname": c.target, "name": c.name, "time": f"{c.duration:.3f}"})
        if c.status == "pending":
            ET.SubElement(tc, "skipped", {"message": c.reason})
        elif c.status != "passed":
            tag = "failure" if c.status == "failed" else "error"
            ET.SubElement(tc, tag, {"message": c.reason}).text = _test_output(c)
    if report.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(report.notes)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


CSV_FIELDS = ("submission", "assignment", "case_id", "name", "status", "score", "max_score", "reason")


def to_csv(report: Report, header: bool = True) -> str:
    """One row per case (or one row with the problem when nothing could be graded).

    Text cells that a spreadsheet would run as a formula are neutralised.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(CSV_FIELDS)
    safe = spreadsheet_safe
    if report.problem:
        writer.writerow([safe(report.submission), report.assignment or "", "", "read submission", "error", 0,
                         _points(report.max_score), safe(report.problem)])
    for c in report.cases:
        writer.writerow([safe(report.submission), report.assignment or "", safe(c.case_id), safe(c.name), c.status,
                         _points(c.score), _points(c.max_score), safe(c.reason)])
    return buf.getvalue()
