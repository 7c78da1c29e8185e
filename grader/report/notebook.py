"""``--format notebook``: the student's own notebook, rendered by nbconvert, each cause under its cell.

The page is the submission as the student wrote it: its cells, and their outputs as saved,
with every cause card (what, where, the fix, the cost, the evidence, the attention maps) placed
directly under the cell and line it names, that line highlighted. The score, the table of
cases and the causes that name no cell (a missing class, a timeout) lead the page. A ``.py``
submission shows as one code cell per definition.

It is always the student's view (``grader.report.audience``), self-contained and offline: inline
CSS, no script, nothing fetched. Nothing the student wrote reaches the page as live HTML: code
is highlighted by pygments, markdown is rendered and then cleaned to an allowlist of tags (no
script, no style, no event attributes, images only as inline data), and of the saved outputs only
text, tracebacks and PNG/JPEG images are kept (an HTML, JavaScript or SVG output shows its text
form). What is read from the file is bounded (``MAX_*``); a notebook whose outputs cannot be
read shows its code alone, and says so.
"""
from __future__ import annotations

import ast
import base64
import binascii
import functools
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.model.outcomes import (
    Cause,
    Forbidden,
    ForbiddenStatic,
    MissingTarget,
    Problem,
    Raised,
    UnitCause,
)
from grader.model.result import CaseResult, CauseSummary, Report
from grader.report.audience import for_audience
from grader.report.html import STYLE, case_table, cause_section, report_heading
from grader.plan.parsing import parse as parse_python

#: The most bytes of a notebook whose outputs and markdown are read (its code is read by the grader's own
#: bounded reader whatever its size).
MAX_NOTEBOOK_BYTES = 32 * 2**20
#: The most characters of one cell's text outputs, of one markdown cell, and of all markdown together.
MAX_OUTPUT_CHARS = 20_000
MAX_MARKDOWN_CHARS = 50_000
MAX_ALL_MARKDOWN = 1_000_000
#: The most bytes of one image (base64), and of all images together.
MAX_IMAGE_BYTES = 2 * 2**20
MAX_ALL_IMAGES = 20 * 2**20
_IMAGE_TYPES = ("image/png", "image/jpeg")
#: Markdown's HTML, kept: what prose, lists, tables and code need; nothing that runs, loads or styles.
_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
         "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td",
         "th", "thead", "tr", "ul"}


@dataclass
class ShownCell:
    """One cell of the page: its number (as the grader's labels count cells), kind, source and outputs."""

    number: int
    kind: str
    source: str
    label: str = ""
    #: for a ``.py`` submission's cells: the file's line that is this cell's first
    first_line: int = 1
    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: the cause entries placed under it, with the cell's line each names (None: the cell as a whole)
    causes: list[tuple[CauseSummary, int | None]] = field(default_factory=list)


def to_notebook(report: Report, source: Path) -> str:
    """The page for ``report`` of the submission ``source`` (a ``.ipynb`` or ``.py``), for the student."""
    shown = for_audience(report, "student")
    cells, remark = read_cells(source)
    placed, _ = place_causes(shown, cells)
    return _page(shown, cells, placed, remark)


# --------------------------------------------------------------------------- reading the cells


def read_cells(source: Path) -> tuple[list[ShownCell], str]:
    """The submission's cells, and a remark on what could not be shown ('' when all of it is)."""
    from grader.errors import GraderError
    from grader.plan.submission import read_submission

    try:
        submission = read_submission(source)
    except GraderError:  # said above the page as the report's problem; its message may name a server's path
        return [], "The submitted file's cells cannot be shown: it could not be read."
    if submission.kind == "python":
        return _python_cells(submission.units[0].source, submission.units[0].label), ""
    by_number = {u.index: u for u in submission.units}
    code_only = [ShownCell(u.index, "code", u.source, u.label) for u in submission.units]
    try:
        size = os.lstat(source).st_size
        if size > MAX_NOTEBOOK_BYTES:
            return code_only, f"Only the code is shown: the notebook is over {MAX_NOTEBOOK_BYTES >> 20} MB."
        raw = json.loads(source.read_bytes())
    except (OSError, ValueError, RecursionError):
        return code_only, "Only the code is shown: the notebook's other contents could not be read."
    cells = raw.get("cells") if isinstance(raw, dict) else None
    if not isinstance(cells, list) or raw.get("nbformat") != 4:
        return code_only, "Only the code is shown: the notebook is not in nbformat 4."
    out: list[ShownCell] = []
    budget = {"markdown": MAX_ALL_MARKDOWN, "images": MAX_ALL_IMAGES}
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        if number in by_number:  # the code as saved, where its lines are the grader's (magics are not)
            unit = by_number[number]
            saved = _text(cell.get("source"), len(unit.source) * 2 + 1000)
            code = saved if len(saved.splitlines()) == len(unit.source.splitlines()) else unit.source
            out.append(ShownCell(number, "code", code, unit.label, outputs=_outputs(cell.get("outputs"), budget)))
        elif cell.get("cell_type") == "markdown":
            text = _text(cell.get("source"))[:min(MAX_MARKDOWN_CHARS, budget["markdown"])]
            budget["markdown"] -= len(text)
            out.append(ShownCell(number, "markdown", text))
    return out, ""


def _python_cells(text: str, label: str) -> list[ShownCell]:
    """A ``.py`` file as cells: each top-level definition its own cell, the statements between them
    together (the comments above a definition go with it); the whole file when it does not parse."""
    lines = text.splitlines()
    try:
        body = parse_python(text).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [ShownCell(1, "code", text, label)]
    starts = [1]
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            while first > 1 and lines[first - 2].lstrip().startswith("#"):
                first -= 1
            starts += [first, (node.end_lineno or node.lineno) + 1]
    starts = sorted({s for s in starts if s <= len(lines)})
    cells = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines)
        while start <= end and not lines[start - 1].strip():  # blank lines between cells are not shown
            start += 1
        while end >= start and not lines[end - 1].strip():
            end -= 1
        if start <= end:
            cells.append(ShownCell(len(cells) + 1, "code", "\n".join(lines[start - 1:end]), label, first_line=start))
    return cells or [ShownCell(1, "code", text, label)]


def _text(value: Any, most: int = MAX_OUTPUT_CHARS) -> str:
    """nbformat's text (a string or a list of strings), at most ``most`` characters."""
    if isinstance(value, str):
        return value[:most]
    if isinstance(value, list):
        out, n = [], 0
        for part in value:
            if isinstance(part, str) and n < most:
                out.append(part[:most - n])
                n += len(out[-1])
        return "".join(out)
    return ""


def _outputs(raw: Any, budget: dict[str, int]) -> list[dict[str, Any]]:
    """A cell's saved outputs as the page shows them: text, tracebacks and PNG/JPEG images, bounded."""
    import nbformat

    if not isinstance(raw, list):
        return []
    out: list[dict[str, Any]] = []
    chars = MAX_OUTPUT_CHARS
    for o in raw[:200]:
        if not isinstance(o, dict) or chars <= 0:
            continue
        kind = o.get("output_type")
        if kind == "stream":
            text = _text(o.get("text"), chars)
            chars -= len(text)
            name = o.get("name") if o.get("name") in ("stdout", "stderr") else "stdout"
            out.append(nbformat.v4.new_output("stream", name=name, text=text))
        elif kind == "error":
            trace = [t for t in o.get("traceback", []) if isinstance(t, str)] if isinstance(o.get("traceback"), list) else []
            text = _text(trace and "\n".join(trace), chars)
            chars -= len(text)
            out.append(nbformat.v4.new_output("error", ename=_text(o.get("ename"), 200),
                                              evalue=_text(o.get("evalue"), 2000), traceback=text.split("\n")))
        elif kind in ("display_data", "execute_result") and isinstance(o.get("data"), dict):
            data: dict[str, str] = {}
            for mime in _IMAGE_TYPES:
                image = _image(o["data"].get(mime), budget)
                if image:
                    data[mime] = image
                    break
            if not data:
                text = _text(o["data"].get("text/plain"), chars)
                chars -= len(text)
                if text:
                    data["text/plain"] = text
            if data:
                out.append(nbformat.v4.new_output("display_data", data=data))
    if chars <= 0:
        out.append(nbformat.v4.new_output("stream", name="stdout", text="\n… (more output, not shown)"))
    return out


def _image(value: Any, budget: dict[str, int]) -> str | None:
    """A base64 image small enough to show, with nothing but base64 in it; None otherwise."""
    text = _text(value, MAX_IMAGE_BYTES + 1)
    if not text or len(text) > min(MAX_IMAGE_BYTES, budget["images"]):
        return None
    data = "".join(text.split())  # nbformat wraps base64 in lines; anything else in it is refused below
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    budget["images"] -= len(text)
    return data


# --------------------------------------------------------------------------- where each cause goes


def place_causes(report: Report, cells: list[ShownCell]) -> tuple[dict[int, tuple[int, str]], list[CauseSummary]]:
    """Each cause entry's cell (its number, and where it is in words: 'cell 4, line 12', 'mha.py, line 30'),
    and the entries that name no cell; each cell's ``causes`` list is filled with the entries under it.

    A cause goes where its facts say it is (the line that raised, the blank, the forbidden call, a
    class under another name); a wrong answer, under the cell that defines its class (the last one:
    it is the one graded); the rest lead the page.
    """
    cases = {c.case_id: c for c in report.cases}
    placed: dict[int, tuple[int, str]] = {}
    unplaced = []
    for cause in report.causes:
        members = [cases[cid] for cid in cause.cases if cid in cases]
        spot = None if cause.hidden_only else _spot(members, cells)
        if spot is None:
            unplaced.append(cause)
            continue
        cell, line = spot
        cell.causes.append((cause, line))
        placed[cause.number] = (cell.number, _at(cell, line))
    return placed, unplaced


def _spot(members: list[CaseResult], cells: list[ShownCell]) -> tuple[ShownCell, int | None] | None:
    for c in members:
        where = fact_location(c.cause, c.problems) if c.cause is not None else None
        if where is not None:
            found = _cell_at(cells, *where)
            if found is not None:
                return found
    for c in members:
        definer = _defining_cell(cells, c.target)
        if definer is not None:
            return definer, None
    return None


def fact_location(cause: Cause, problems: tuple[Problem, ...] = ()) -> tuple[str, int | None] | None:
    """The cell label and line a cause's facts name, if any."""
    if isinstance(cause, Raised) and cause.error.label:
        return cause.error.label, cause.error.line
    if isinstance(cause, UnitCause):
        return cause.unit.label, cause.unit.line
    if isinstance(cause, MissingTarget) and cause.suggestion is not None:
        return cause.suggestion.label, cause.suggestion.line
    if isinstance(cause, Forbidden) and problems and isinstance(problems[0], ForbiddenStatic):
        return problems[0].label, problems[0].line
    return None


def _cell_at(cells: list[ShownCell], label: str, line: int | None) -> tuple[ShownCell, int | None] | None:
    """The cell a label names and the line within it (a ``.py`` file's line, in the cell that holds it)."""
    holders = [c for c in cells if c.kind == "code" and c.label == label]
    if not holders:
        return None
    if line is None:
        return holders[0], None
    for cell in holders:
        if cell.first_line <= line < cell.first_line + max(1, len(cell.source.splitlines())):
            return cell, line - cell.first_line + 1
    return holders[-1], None


def _at(cell: ShownCell, line: int | None) -> str:
    """Where a line of a cell is, as the student finds it: 'cell 4, line 12'; a ``.py`` file's own line."""
    if cell.label.startswith("cell ") or not cell.label:
        return f"cell {cell.number}" + (f", line {line}" if line else "")
    return f"{cell.label}, line {cell.first_line + line - 1}" if line else _cell_name(cell)


def _defining_cell(cells: list[ShownCell], target: str) -> ShownCell | None:
    pattern = re.compile(rf"^class\s+{re.escape(target)}\b", re.MULTILINE)
    return next((c for c in reversed(cells) if c.kind == "code" and pattern.search(c.source)), None)


# --------------------------------------------------------------------------- the page


_PAGE_STYLE = """
body{margin:2rem;font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1f24}
.notebook{max-width:72rem} .notebook .cell{margin:.6rem 0} .notebook .prompt{color:#57606a;font-size:.75rem;
font-family:ui-monospace,monospace;margin:.2rem 0} .notebook .input_area{border:1px solid #d0d7de;border-radius:6px;
background:#f6f8fa;overflow-x:auto} .notebook .highlight pre{margin:0;padding:.5rem .7rem;font-size:.85rem;
line-height:1.35} .notebook .highlight .hll{background:#ffd8d3}
.notebook .highlight .linenos{color:#8c959f;margin-right:.6rem;user-select:none}
.notebook .output_area pre{white-space:pre-wrap;margin:.2rem 0 .2rem .7rem;font-size:.82rem;max-height:30rem;overflow:auto}
.notebook .output_stderr pre{background:#fff5f5} .notebook img{max-width:100%}
.notebook .text_cell_render{padding:.2rem .7rem} .notebook .text_cell_render img{max-width:100%}
.notebook .cards{margin:.4rem 0 1.2rem 1.5rem} .notebook .cards section.cause{background:#fff}
.notebook .cellname{color:#57606a;font-size:.75rem;margin-top:1rem} .remark{color:#57606a}
.grader-report .placed{margin:.2rem 0}
"""

_TEMPLATE = """{%- extends 'basic/index.html.j2' -%}
{% block codecell %}
<div class="cellname" id="cell-{{ cell.metadata.grader.number }}">{{ cell.metadata.grader.name }}</div>
{{ super() }}
{{ cell.metadata.grader.cards }}
{%- endblock codecell %}
{% block input %}
<div class="inner_cell"><div class="input_area">{{ cell.metadata.grader.code }}</div></div>
{%- endblock input %}
{% block markdowncell scoped %}
<div class="cell text_cell" id="cell-{{ cell.metadata.grader.number }}"><div class="text_cell_render">
{{ cell.metadata.grader.markdown }}
</div></div>
{%- endblock markdowncell %}
"""


def _page(report: Report, cells: list[ShownCell], placed: dict[int, tuple[int, str]], remark: str) -> str:
    from pygments.formatters import HtmlFormatter

    e = html.escape
    try:
        body = _cells_html(report, cells) if cells else ""
    except Exception as err:  # noqa: BLE001 - a file the renderer cannot take: every cause is shown at the top
        body, placed = "", {}
        remark = f"Your cells cannot be shown here (the renderer failed: {type(err).__name__})."
    top = [report_heading(report, "Your notebook, with feedback:")]
    if remark:
        top.append(f"<p class='remark'>{e(remark)}</p>")
    if report.causes:
        top.append(f"<h2>What to fix ({len(report.causes)})</h2>" if len(report.causes) > 1 else "<h2>What to fix</h2>")
        for cause in report.causes:
            if cause.number in placed:
                number, at = placed[cause.number]
                top.append(f"<p class='placed'><a href='#cause-{cause.number}'>{cause.number}. {e(cause.title)}</a>"
                           f" — shown under <a href='#cell-{number}'>{e(at)}</a></p>")
            else:
                top.append(cause_section(report, cause))
    if report.cases:
        top.append(case_table(report))

    css = STYLE + HtmlFormatter(style="default").get_style_defs(".notebook .highlight") + _PAGE_STYLE
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Feedback: {e(report.submission)}"
            f"</title><style>{css}</style></head><body>\n<div class='grader-report'>{''.join(top)}</div>\n"
            f"<div class='notebook'>{body}</div>\n</body></html>\n")


def _cells_html(report: Report, cells: list[ShownCell]) -> str:
    """The cells through nbconvert (our template over its basic one), each cause card under its cell."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for cell in cells:
        meta = {"number": cell.number, "name": html.escape(_cell_name(cell))}
        if cell.kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(cell.source, id=f"c{cell.number}", metadata={"grader": {
                **meta, "markdown": clean_markdown(cell.source)}}))
            continue
        lines = sorted({line for _, line in cell.causes if line})
        cards = "".join(cause_section(report, cause) for cause, _ in cell.causes)
        nb.cells.append(nbformat.v4.new_code_cell(cell.source, id=f"c{cell.number}", outputs=cell.outputs, metadata={"grader": {
            **meta, "code": highlighted(cell.source, lines, cell.first_line),
            "cards": f"<div class='grader-report cards'>{cards}</div>" if cards else ""}}))
    body, _ = _exporter().from_notebook_node(nb)
    return body


@functools.cache
def _exporter() -> Any:
    """nbconvert's HTML exporter with our template, made once per process (its templates compile once)."""
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="basic", template_file="grader_notebook.html.j2", sanitize_html=True,
                        exclude_anchor_links=True,
                        extra_loaders=[jinja2.DictLoader({"grader_notebook.html.j2": _TEMPLATE})])


def _cell_name(cell: ShownCell) -> str:
    """'cell 7 (In [3])'; a ``.py`` file's cell by its lines: 'mha.py, lines 12–40'."""
    if cell.first_line == 1 and cell.label.startswith("cell "):
        return cell.label
    last = cell.first_line + max(len(cell.source.splitlines()), 1) - 1
    return f"{cell.label}, lines {cell.first_line}–{last}" if cell.label else f"cell {cell.number}"


def highlighted(source: str, lines: list[int], first_line: int = 1) -> str:
    """``source`` as highlighted HTML (pygments escapes it), numbered, the ``lines`` marked."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(source, PythonLexer(stripnl=False, ensurenl=False),
                     HtmlFormatter(linenos="inline", linenostart=first_line, hl_lines=lines, cssclass="highlight"))


def clean_markdown(source: str) -> str:
    """A markdown cell as HTML with nothing live in it: rendered, then cut to ``_TAGS`` (links to the web or
    the page only, images only as inline data)."""
    import bleach
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False, exclude_anchor_links=True)
    try:
        rendered = MarkdownWithMath(renderer=renderer).render(source)
    except Exception:  # noqa: BLE001 - a renderer's failure on a student's text: show the text
        return f"<pre>{html.escape(source)}</pre>"
    return bleach.clean(rendered, tags=_TAGS, attributes={"a": _safe_link, "img": _safe_image, "*": ["title"]},
                        protocols=["http", "https", "mailto", "data"], strip=True, strip_comments=True)


def _safe_link(tag: str, name: str, value: str) -> bool:
    return name == "href" and (value.startswith(("http://", "https://", "mailto:", "#")))


def _safe_image(tag: str, name: str, value: str) -> bool:
    return name == "alt" or (name == "src" and value.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")))
