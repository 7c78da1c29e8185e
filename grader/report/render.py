"""Rendering a ``Report``: a rich table for people; JSON, Gradescope JSON, JUnit XML, CSV for machines.

The result model knows nothing of presentation; everything about looks lives here. Text in
the model is already safe (``grader.model.text``); renderers never parse it as markup:
rich gets ``Text`` objects, never markup strings.
"""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from grader.report.formats import FORMATS
from grader.model.messages import points as _points
from grader.model.messages import hint_line
from grader.model.summaries import cause_pointer, causes_heading, more_lines, seen_in, summary_costs
from grader.model.result import CaseResult, CauseSummary, Report
from grader.report.rows import case_body, case_points, case_rows, labelled, more_details, shown_in_cause, shown_notes
from grader.model.text import spreadsheet_safe

_STATUS_STYLE = {"passed": ("PASS", "bold green"), "failed": ("FAIL", "bold red"), "error": ("ERROR", "bold yellow"),
                 "pending": ("LATER", "dim")}


def render(report: Report, fmt: str, source: Path | None = None) -> str:
    """The report as text in ``fmt`` (rich is rendered without colour, at 100 columns); ``source``: the
    submission file, which ``notebook`` shows (default: the report's ``submission``)."""
    if fmt == "rich":
        return render_rich_text(report)
    if fmt not in FORMATS:
        raise ValueError(f"invalid format {fmt!r}, expected one of {', '.join(FORMATS)}")
    if fmt == "html":
        from grader.report.html import to_html
        return to_html(report)
    if fmt == "notebook":
        from grader.report.notebook import to_notebook
        return to_notebook(report, source if source is not None else Path(report.submission))
    return {"json": to_json, "gradescope": to_gradescope, "junit": to_junit, "csv": to_csv}[fmt](report)


def rich_renderable(report: Report) -> Any:
    """A rich renderable of the report: the score, the causes of lost points, a table of cases, the rest.

    Reads well at 80 columns: each cause once (what, where, the fix, what it costs), then a
    narrow table whose rows point to their cause, grouped under their class.
    """
    from rich import box
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    title = Text.assemble(("Grading ", "bold"), (report.submission, "bold cyan"))
    if report.assignment:
        title.append(f" · {report.assignment}")
    title.append(" · score ").append(f"{_points(report.score)}/{_points(report.max_score)}", "bold")
    if report.pending_points:
        title.append(f" (+{_points(report.pending_points)} hidden)")
    parts.append(title)
    if report.problem:
        parts.append(Text.assemble(("Could not grade: ", "bold red"), Text(report.problem)))
    for note in shown_notes(report):
        parts.append(Text.assemble(("note: ", "yellow"), Text(note)))
    if report.causes:
        parts.append(Text(""))
        parts.append(Text(causes_heading(len(report.causes)), style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(overflow="fold")
        for cause in report.causes:
            grid.add_row(Text(f"{cause.number}.", style="bold"), _cause_text(cause))
        parts.append(grid)
    if report.cases:
        table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
        table.add_column("Case", overflow="fold")
        table.add_column("Points", justify="right", no_wrap=True)
        table.add_column("Result", no_wrap=True)
        table.add_column("Cause", justify="right", no_wrap=True)
        rows = case_rows(report.cases)
        indent = 2 if any(heading for heading, _, _ in rows) else 0
        for heading, c, name in rows:
            if heading:
                table.add_row(Text(heading, style="bold"), Text(""), Text(""), Text(""))
            label, style = _STATUS_STYLE[c.status]
            table.add_row(Padding(Text(name), (0, 0, 0, indent)), Text(case_points(c)), Text(label, style=style),
                          Text(str(c.cause_ref) if c.cause_ref else ""))
        table.add_section()
        label = "Total, public cases only" if report.local else "Total"
        table.add_row(Text(label, style="bold"), Text(f"{_points(report.score)}/{_points(report.max_score)}",
                                                      style="bold"), Text(""), Text(""))
        parts.append(table)
    else:
        parts.append(Text(f"Total: {_points(report.score)}/{_points(report.max_score)}", style="bold"))
    more = more_details(report)
    if more:
        parts.append(Text("More on each case", style="bold"))
        for c in more:
            body = case_body(c, shown_in_cause(report, c))
            parts.append(Text.assemble(("• ", "bold"), (labelled(c), "bold"), f" (cause {c.cause_ref})"))
            parts.append(Padding(Text(_capped(body, MAX_CASE_LINES)), (0, 0, 0, 4)))
    footer = f"isolation: {report.isolation}" if report.isolation else ""
    if report.course:
        footer += f"{' · ' if footer else ''}course: {report.course}"
    if report.execution_time:
        footer += f"{' · ' if footer else ''}{report.execution_time:.1f} s"
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


#: The most lines of one cause's evidence, and of what one case adds to it, the terminal shows (the HTML
#: and JSON keep all).
MAX_EVIDENCE_LINES = 24
MAX_CASE_LINES = 6


def _cause_text(cause: CauseSummary) -> Any:
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    text = Text(cause.title, style="bold")
    if cause.where:
        text.append("\nWhere: ", "bold").append(cause.where)
    if cause.fix:
        text.append("\nFix: ", "bold").append(cause.fix)
    text.append("\n" + summary_costs(cause.points_lost, len(cause.cases)), "dim")
    if not cause.evidence:
        return text
    if cause.seen_in:
        text.append("\n" + seen_in(cause.seen_in))
    return Group(text, Padding(Text(_capped(cause.evidence)), (0, 0, 0, 2)))


def _capped(text: str, most: int = MAX_EVIDENCE_LINES) -> str:
    lines = text.splitlines()
    if len(lines) <= most:
        return text
    return "\n".join([*lines[:most], more_lines(len(lines) - most)])


def render_rich_text(report: Report, width: int = 100) -> str:
    """The rich view as plain text (for files and tests)."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False).print(
        rich_renderable(report))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def to_json(report: Report) -> str:
    """The plain result model as JSON."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def case_text(report: Report, c: CaseResult, where_and_fix: bool = False) -> str:
    """A case's own output for machines (a Gradescope test, a JUnit failure): its cause, then its facts;
    ``where_and_fix``: with the cause's where and fix (a pytest item's failure, read on its own)."""
    lines = []
    cause = report.cause(c.cause_ref) if c.cause_ref else None
    if cause is not None:
        lines.append(cause_pointer(cause.number, cause.title))
        if where_and_fix:
            lines += [x for x in (cause.where and f"Where: {cause.where}", cause.fix and f"Fix: {cause.fix}") if x]
    if c.reason and (cause is None or c.reason != cause.title):
        lines.append(c.reason)
    lines += [x for x in (c.details, hint_line(c.hint) if c.hint else "") if x]
    return "\n".join(lines)


def summary_lines(report: Report) -> list[str]:
    """What closes a run of the cases as tests (the pytest plugin): the score, the notes, the isolation."""
    head = f"{report.submission}: score {_points(report.score)}/{_points(report.max_score)}"
    if report.pending_points:
        head += f" (public cases only; {_points(report.pending_points)} points in hidden cases are graded after submission)"
    lines = [head] + ([f"Could not grade: {report.problem}"] if report.problem else [])
    lines += [f"note: {n}" for n in shown_notes(report)]
    return lines + ([f"isolation: {report.isolation}"] if report.isolation else [])


def causes_text(report: Report) -> str:
    """Every cause once, as plain text: what, where, the fix, what it costs and in which cases."""
    if not report.causes:
        return ""
    names = {c.case_id: c.name for c in report.cases}
    out = [causes_heading(len(report.causes))]
    for cause in report.causes:
        out.append(f"{cause.number}. {cause.title}")
        if cause.where:
            out.append(f"   Where: {cause.where}")
        if cause.fix:
            out += ["   Fix: " + line if i == 0 else "   " + line for i, line in enumerate(cause.fix.splitlines())]
        out.append(f"   {summary_costs(cause.points_lost, len(cause.cases))}")
        out += [f"     - {names.get(cid, cid)}" for cid in cause.cases]
    return "\n".join(out)


def to_gradescope(report: Report) -> str:
    """Gradescope's results.json: score, max_score, output (the causes first), execution_time, tests."""
    output = []
    if report.problem:
        output.append(f"Could not grade this submission: {report.problem}")
    if report.causes:
        output.append(causes_text(report))
    output += list(shown_notes(report))
    if report.pending_points:
        output.append(f"Local check: {_points(report.pending_points)} points in hidden cases are graded "
                      "after submission and are not included.")
    if report.isolation:
        output.append(f"Isolation: {report.isolation}")
    data = {
        "score": report.score,
        "max_score": report.max_score,
        "output": "\n\n".join(output),
        "execution_time": round(report.execution_time, 3),
        "tests": [
            {"name": c.name, "score": c.score, "max_score": c.max_score,
             "status": "passed" if c.status == "passed" else "failed",
             "output": case_text(report, c), "visibility": "hidden" if c.visibility == "hidden" else "visible"}
            for c in report.cases if c.status != "pending"
        ],
    }
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
        tc = ET.SubElement(suite, "testcase", {"classname": c.target, "name": labelled(c), "time": f"{c.duration:.3f}"})
        if c.status == "pending":
            ET.SubElement(tc, "skipped", {"message": c.reason})
        elif c.status != "passed":
            tag = "failure" if c.status == "failed" else "error"
            ET.SubElement(tc, tag, {"message": c.reason}).text = case_text(report, c)
    if shown_notes(report) or report.causes:
        ET.SubElement(suite, "system-out").text = "\n\n".join(
            x for x in (causes_text(report), *shown_notes(report)) if x)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


CSV_FIELDS = ("submission", "assignment", "case_id", "name", "visibility", "status", "score", "max_score", "reason",
              "cause")


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
        writer.writerow([safe(report.submission), report.assignment or "", "", "read submission", "", "error", 0,
                         _points(report.max_score), safe(report.problem), ""])
    for c in report.cases:
        cause = report.cause(c.cause_ref) if c.cause_ref else None
        writer.writerow([safe(report.submission), report.assignment or "", safe(c.case_id), safe(c.name),
                         c.visibility, c.status,
                         _points(c.score), _points(c.max_score), safe(c.reason),
                         safe(cause_pointer(cause.number, cause.title)) if cause else ""])
    return buf.getvalue()
