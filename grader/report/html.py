"""The HTML feedback file: the report, and attention maps drawn side by side.

One self-contained page (inline CSS, no scripts, nothing fetched), so it opens anywhere,
offline. Attention maps are tables whose cells are shaded by weight; masked positions are
hatched and marked ×; where the student's weight differs from the reference's, the cell is
outlined.
"""
from __future__ import annotations

import html
from typing import Any

from grader.report.result import CaseResult, Report

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1b1f24;max-width:72rem}
h1{font-size:1.4rem;margin-bottom:.2rem} .meta{color:#57606a;margin-bottom:1rem}
table.report{border-collapse:collapse;width:100%;margin:1rem 0}
table.report th,table.report td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.pts{text-align:right;white-space:nowrap} .passed{color:#1a7f37;font-weight:600}
.failed{color:#cf222e;font-weight:600} .error{color:#9a6700;font-weight:600} .pending{color:#57606a}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .75rem;margin:.4rem 0;border-radius:6px}
.problem{background:#ffebe9;border:1px solid #cf222e;padding:.5rem .75rem;border-radius:6px}
section.case{border:1px solid #d0d7de;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}
section.case h2{font-size:1.05rem;margin:.1rem 0 .5rem} pre{white-space:pre-wrap;background:#f6f8fa;padding:.6rem;border-radius:6px;font-size:.85rem}
.maps{display:flex;gap:2rem;flex-wrap:wrap} .map h3{font-size:.9rem;margin:.2rem 0}
table.heat{border-collapse:collapse;font-size:.7rem;font-family:ui-monospace,monospace}
table.heat td{width:2.6rem;height:1.6rem;text-align:center;border:1px solid #fff}
table.heat td.masked{background:repeating-linear-gradient(45deg,#eee,#eee 3px,#ccc 3px,#ccc 6px)!important;color:#555}
table.heat td.off{outline:2px solid #cf222e;outline-offset:-2px}
table.heat th{font-weight:normal;color:#57606a;padding:0 .2rem}
.legend{color:#57606a;font-size:.8rem} .total{font-weight:700}
"""


def to_html(report: Report) -> str:
    """The whole feedback page."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Feedback: {e(report.submission)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Feedback on {e(report.submission)}</h1>",
             f"<div class='meta'>assignment {e(report.assignment or '?')} · score "
             f"<span class='total'>{report.score:g}/{report.max_score:g}</span>"
             + (f" (public cases only; {report.pending_points:g} hidden points graded after submission)"
                if report.pending_points else "") + f" · {e(report.isolation)}</div>"]
    if report.problem:
        parts.append(f"<div class='problem'>Could not grade: {e(report.problem)}</div>")
    parts += [f"<div class='note'>{e(n)}</div>" for n in report.notes]
    if report.cases:
        rows = "".join(
            f"<tr><td>{_link(c)}</td><td class='pts'>{c.score:g}/{c.max_score:g}</td>"
            f"<td class='{c.status}'>{c.status.upper()}</td><td>{e(c.reason)}</td></tr>" for c in report.cases)
        parts.append("<table class='report'><thead><tr><th>Check</th><th>Points</th><th>Status</th><th>Reason</th>"
                     f"</tr></thead><tbody>{rows}</tbody></table>")
    for c in report.cases:  # what went wrong, with pictures where they help
        if c.status in ("failed", "error"):
            parts.append(_case_section(c))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _link(c: CaseResult) -> str:
    e = html.escape
    return f"<a href='#{e(c.case_id)}'>{e(c.name)}</a>" if c.status in ("failed", "error") else e(c.name)


def _case_section(c: CaseResult) -> str:
    e = html.escape
    body = [f"<section class='case' id='{e(c.case_id)}'><h2>{e(c.name)} — <span class='{c.status}'>"
            f"{c.status.upper()}</span></h2>"]
    if c.reason:
        body.append(f"<p>{e(c.reason)}</p>")
    if c.details:
        body.append(f"<pre>{e(c.details)}</pre>")
    for fig in c.figures:
        body.append(_figure(fig))
    body.append("</section>")
    return "\n".join(body)


def _figure(fig: dict[str, Any]) -> str:
    e = html.escape
    maps = [("Reference", fig["expected"], None)]
    if fig.get("got") is not None:
        maps.append(("Yours", fig["got"], fig["expected"]))
    inner = "".join(f"<div class='map'><h3>{title}</h3>{_heat(values, fig.get('mask'), compare)}</div>"
                    for title, values, compare in maps)
    return (f"<div><h3>{e(fig.get('title', ''))}</h3><div class='maps'>{inner}</div>"
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
            off = compare is not None and abs(v - compare[i][j]) > 1e-4
            classes = " ".join(x for x in ("masked" if masked else "", "off" if off else "") if x)
            shade = max(0.0, min(1.0, v))
            text_color = "#fff" if shade > 0.55 else "#1b1f24"
            label = f"×{v:.2f}" if masked else f"{v:.2f}"
            cells.append(f"<td class='{classes}' style='background:rgba(9,105,218,{shade:.3f});color:{text_color}'"
                         f" title='q{i} k{j}: {v:.4f}'>{label}</td>")
        rows.append(f"<tr><th>q{i}</th>{''.join(cells)}</tr>")
    return f"<table class='heat'>{''.join(rows)}</table>"
