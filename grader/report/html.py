"""The HTML feedback file: the report, and attention maps drawn side by side.

One self-contained page (inline CSS, no scripts, nothing fetched), so it opens anywhere,
offline. Attention maps are tables whose cells are shaded by weight; masked positions are
hatched and marked ×; where the student's weight differs from the reference's, the cell is
outlined.
"""
from __future__ import annotations

import html
import re
from typing import Any

from grader.model.messages import points, value
from grader.model.summaries import causes_heading, seen_in, summary_costs
from grader.model.result import FIGURE_DECIMALS, CaseResult, CauseSummary, Report
from grader.report.rows import case_body, case_points, case_rows, labelled, more_details, shown_in_cause, shown_notes

#: The most cases of one cause whose attention maps the page draws.
MAX_FIGURED_CASES = 4
#: How far a student's weight may be from the reference's and still not be outlined: the weights are
#: rounded (``FIGURE_DECIMALS``), so one unit of the last decimal either way is rounding, not a difference.
_SAME_WEIGHT = 1.5 * 10.0 ** -FIGURE_DECIMALS
_STATUS_WORD = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "pending": "LATER"}

STYLE = """
.grader-report{font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1f24;max-width:72rem;line-height:1.4}
.grader-report h1{font-size:1.4rem;margin-bottom:.2rem} .grader-report .meta{color:#57606a;margin-bottom:1rem}
.grader-report h2{font-size:1.15rem;margin:1.2rem 0 .4rem}
.grader-report table.report{border-collapse:collapse;width:100%;margin:1rem 0}
.grader-report table.report th,.grader-report table.report td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;
text-align:left;vertical-align:top}
.grader-report td.pts{text-align:right;white-space:nowrap} .grader-report .passed{color:#1a7f37;font-weight:600}
.grader-report .failed{color:#cf222e;font-weight:600} .grader-report .error{color:#9a6700;font-weight:600}
.grader-report .pending{color:#57606a} .grader-report tr.target td{font-weight:700;background:#f6f8fa}
.grader-report .note{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .75rem;margin:.4rem 0;border-radius:6px}
.grader-report .problem{background:#ffebe9;border:1px solid #cf222e;padding:.5rem .75rem;border-radius:6px}
.grader-report section.cause,.grader-report section.case{border:1px solid #d0d7de;border-radius:6px;
padding:.75rem 1rem;margin:1rem 0}
.grader-report section.cause{border-left:4px solid #cf222e}
.grader-report section h3{font-size:1.05rem;margin:.1rem 0 .5rem} .grader-report .costs{color:#57606a}
.grader-report pre{white-space:pre-wrap;background:#f6f8fa;padding:.6rem;border-radius:6px;font-size:.85rem}
.grader-report .maps{display:flex;gap:2rem;flex-wrap:wrap} .grader-report .map h4{font-size:.9rem;margin:.2rem 0}
.grader-report table.heat{border-collapse:collapse;font-size:.7rem;font-family:ui-monospace,monospace}
.grader-report table.heat td{width:2.6rem;height:1.6rem;text-align:center;border:1px solid #fff}
.grader-report table.heat td.masked{background:repeating-linear-gradient(45deg,#eee,#eee 3px,#ccc 3px,#ccc 6px)!important;
color:#555}
.grader-report table.heat td.off{outline:2px solid #cf222e;outline-offset:-2px}
.grader-report table.heat th{font-weight:normal;color:#57606a;padding:0 .2rem}
.grader-report .legend{color:#57606a;font-size:.8rem} .grader-report .total{font-weight:700}
"""


def to_html(report: Report, fragment: bool = False) -> str:
    """The whole feedback page; ``fragment``: only the report's element (for Jupyter's rich display)."""
    e = html.escape
    parts = [f"<style>{STYLE}</style><div class='grader-report'>", report_heading(report, "Feedback on")]
    if report.causes:
        parts.append(f"<h2>{e(causes_heading(len(report.causes)))}</h2>")
        parts += [cause_section(report, cause) for cause in report.causes]
    if report.cases:
        parts.append(case_table(report))
    more = more_details(report)
    if more:
        parts.append("<h2>More on each case</h2>")
        parts += [_case_section(report, c) for c in more]
    parts.append("</div>")
    body = "\n".join(parts) + "\n"
    if fragment:
        return body
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Feedback: {e(report.submission)}"
            f"</title></head><body style='margin:2rem'>\n{body}</body></html>\n")


def report_heading(report: Report, lead: str) -> str:
    """The page's title (``lead`` and the submission), its score and isolation, why it could not be graded,
    and its notes."""
    e = html.escape
    parts = [f"<h1>{e(lead)} {e(report.submission)}</h1>",
             f"<div class='meta'>assignment {e(report.assignment or '?')} · score "
             f"<span class='total'>{points(report.score)}/{points(report.max_score)}</span>"
             + (f" (public cases only; {points(report.pending_points)} hidden points graded after submission)"
                if report.pending_points else "") + f" · {e(report.isolation)}</div>"]
    if report.problem:
        parts.append(f"<div class='problem'>Could not grade: {e(report.problem)}</div>")
    parts += [f"<div class='note'>{e(n)}</div>" for n in shown_notes(report)]
    return "\n".join(parts)


def case_table(report: Report) -> str:
    """The table of cases, grouped under their class, each row pointing to its cause."""
    return ("<table class='report'><thead><tr><th>Case</th><th>Points</th><th>Result</th><th>Cause</th>"
            f"</tr></thead><tbody>{''.join(_rows_html(report))}</tbody></table>")


def _rows_html(report: Report) -> list[str]:
    e = html.escape
    rows = []
    for heading, c, name in case_rows(report.cases):
        if heading:
            rows.append(f"<tr class='target'><td colspan='4'>{e(heading)}</td></tr>")
        label = _STATUS_WORD[c.status]
        cause = f"<a href='#cause-{c.cause_ref}'>{c.cause_ref}</a>" if c.cause_ref else ""
        rows.append(f"<tr id='case-{e(c.case_id)}'><td>{e(name)}</td><td class='pts'>{e(case_points(c))}</td>"
                    f"<td class='{c.status}'>{label}</td><td>{cause}</td></tr>")
    return rows


_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _inline(text: str) -> str:
    """``text`` escaped, its `code` spans (the messages put the student's line and names between
    backticks) shown as code rather than as backticks."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


def cause_section(report: Report, cause: CauseSummary) -> str:
    """One cause's card: what, where, the fix, what it costs (with links to its cases), the evidence, maps."""
    e = html.escape
    names = {c.case_id: c for c in report.cases}
    body = [f"<section class='cause' id='cause-{cause.number}'><h3>{cause.number}. {_inline(cause.title)}</h3>"]
    if cause.where:
        body.append(f"<p><b>Where:</b> {_inline(cause.where)}</p>")
    if cause.fix:
        body.append(f"<p><b>Fix:</b> {_inline(cause.fix)}</p>")
    links = ", ".join(f"<a href='#case-{e(cid)}'>{e(labelled(names[cid]) if cid in names else cid)}</a>"
                      for cid in cause.cases)
    body.append(f"<p class='costs'>{e(summary_costs(cause.points_lost, len(cause.cases)))} {links}</p>")
    if cause.evidence:
        if cause.seen_in:
            body.append(f"<p>{e(seen_in(cause.seen_in))}</p>")
        body.append(f"<pre>{e(cause.evidence)}</pre>")
    pictured = [names[cid] for cid in cause.cases if cid in names and names[cid].figures][:MAX_FIGURED_CASES]
    for c in pictured:
        body.append(f"<p class='costs'>{e(labelled(c))}</p>")
        body += [_figure(fig) for fig in c.figures]
    body.append("</section>")
    return "\n".join(body)


def _case_section(report: Report, c: CaseResult) -> str:
    e = html.escape
    body = [f"<section class='case'><h3>{e(labelled(c))} (cause <a href='#cause-{c.cause_ref}'>{c.cause_ref}</a>)</h3>"]
    shown = shown_in_cause(report, c)
    text = case_body(c, shown)
    if text:
        body.append(f"<pre>{e(text)}</pre>")
    if not shown:
        body += [_figure(fig) for fig in c.figures]
    body.append("</section>")
    return "\n".join(body)


def _figure(fig: dict[str, Any]) -> str:
    e = html.escape
    maps = [("Reference", fig["expected"], None)]
    if fig.get("got") is not None:
        maps.append(("Yours", fig["got"], fig["expected"]))
    inner = "".join(f"<div class='map'><h4>{title}</h4>{_heat(values, fig.get('mask'), compare)}</div>"
                    for title, values, compare in maps)
    return (f"<div><h4>{e(fig.get('title', ''))}</h4><div class='maps'>{inner}</div>"
            "<p class='legend'>Rows are queries, columns keys; darker is more weight. Hatched × cells are masked "
            "(they should get ≈ 0). A red outline marks a weight that differs from the reference.</p></div>")


def _heat(values: list[list[float]], mask: list[list[int]] | None, compare: list[list[float]] | None) -> str:
    rows = []
    n_k = len(values[0]) if values else 0
    rows.append("<tr><th></th>" + "".join(f"<th>k{j}</th>" for j in range(n_k)) + "</tr>")
    for i, row in enumerate(values):
        cells = []
        for j, v in enumerate(row):
            masked = mask is not None and mask[i][j] == 0
            off = compare is not None and abs(v - compare[i][j]) > _SAME_WEIGHT
            classes = " ".join(x for x in ("masked" if masked else "", "off" if off else "") if x)
            shade = max(0.0, min(1.0, v))
            if masked:  # drawn on the light hatching, whatever the weight; weight where none belongs is the bug
                text_color = "#a40e26;font-weight:700" if abs(v) > _SAME_WEIGHT else "#57606a"
            else:
                text_color = "#fff" if shade > 0.55 else "#1b1f24"
            label = f"×{v:.2f}" if masked else f"{v:.2f}"
            cells.append(f"<td class='{classes}' style='background:rgba(9,105,218,{shade:.3f});color:{text_color}'"
                         f" title='q{i} k{j}: {value(v)}'>{label}</td>")
        rows.append(f"<tr><th>q{i}</th>{''.join(cells)}</tr>")
    return f"<table class='heat'>{''.join(rows)}</table>"
