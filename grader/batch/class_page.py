"""The class page: class.txt and class.html, worded and drawn from a ``ClassSummary``.

``summary_text`` (for a terminal, and class.txt) and ``summary_html`` (class.html: one
self-contained file, inline CSS and SVG, no scripts) show the numbers of
``grader.batch.insights.class_summary``; nothing here reads a stored result, nor reads or writes a file.

- **Needs attention** (the page): each student with a status problem (unreadable, timed out,
  crashed, the grader's failure) or a forbidden API, and each student with similar code, one row
  each with its reasons joined, and a link to their feedback page.
- **Similar code** (``flags``, ``grader.batch.similarity``, given to the views, not counted
  here): every flagged pair, in the flags' order, each student with their share of code found in
  the other's; each flagged student needs attention, beside any status problem (one row, reasons
  joined).

Student ids are untrusted: ``safe_text`` makes them one line without control characters,
``summary_html`` escapes every string it shows, and the text shortens what would not fit.
"""
from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Mapping, Sequence

from grader.batch.insights import EXAMPLES, TROUBLE, Bin, ClassSummary, StudentLine, WorkersUsed
from grader.batch.similarity import Flag
from grader.batch.store import Handed
from grader.model.messages import hidden_label
from grader.model.text import safe_text, shortened

#: The terminal summary's width.
WIDTH = 80
_ID_WIDTH = 24


def _n(x: float | None) -> str:
    """A number as the summary prints it: ``7``, ``7.5``, ``7.33``; ``-`` for none."""
    return "-" if x is None else f"{round(x, 2):g}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _short_id(student_id: str) -> str:
    return shortened(student_id, _ID_WIDTH)


def _fit(line: str) -> str:
    return shortened(line, WIDTH)


def _examples_line(indent: str, examples: Sequence[str]) -> str | None:
    return _fit(f"{indent}e.g. " + ", ".join(_short_id(s) for s in examples)) if examples else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def workers_lines(used: WorkersUsed) -> list[str]:
    """What a run's workers did, in words: the warm slots as they ran (not as planned), each fallback
    to a cold worker and each zygote replaced, with the reasons. Nothing when nothing was graded."""
    t = used.tally
    if not used.graded:
        return []
    if not used.slots:
        return [f"workers: a cold one per submission (torch imported for each){f': {used.cold_why}' if used.cold_why else ''}"]
    if not t.cold and not t.replaced:
        return [f"workers: {_count(used.slots, 'warm slot')}, {_count(t.zygotes_started, 'zygote')} started "
                f"(torch imported once in each), {_count(t.forks, 'worker')} forked from them"
                + (f" for {_count(used.graded, 'submission')}" if t.forks != used.graded else "")]
    line = f"workers: {_count(used.slots, 'warm slot')}; {_count(t.forks, 'worker')} forked warm"
    if t.cold:
        line += f", {t.cold} started cold instead (torch imported for each: slower)"
    if t.replaced:
        line += f"; {_count(t.replaced, 'zygote')} replaced after a run ({t.zygotes_started} started)"
    return [line] + [f"  why: {safe_text(r, one_line=True)}" for r in t.reasons]


def handed_lines(summary: ClassSummary) -> list[str]:
    """Late work, resubmissions and files not graded, in words (nothing when there are none)."""
    xs = summary.students_list
    late = [safe_text(x.student_id, one_line=True) for x in xs if x.handed.late]
    out = [_fit(f"Late: {_count(len(late), 'student')}: " + ", ".join(_short_id(i) for i in late))] if late else []
    return out + _resubmitted_lines(summary)


def _resubmitted_lines(summary: ClassSummary) -> list[str]:
    xs = summary.students_list
    again = [safe_text(x.student_id, one_line=True) for x in xs if x.handed.resubmission]
    others = sum(x.handed.others_count for x in xs)
    out = []
    if again:
        out.append(_fit(f"Resubmitted: {_count(len(again), 'student')}, the latest upload graded: "
                        + ", ".join(_short_id(i) for i in again)))
    if others:
        out.append(f"Files not graded: {others} (older uploads and other files: gradebook.csv, column "
                   "files_not_graded)")
    return out


def summary_text(summary: ClassSummary, workers: WorkersUsed | None = None,
                 not_graded: Sequence[tuple[str, str]] = (), flags: Sequence[Flag] | None = None) -> str:
    """The class summary for a terminal: every line at most ``WIDTH`` characters (but the reasons of
    ``workers``, this run's workers: ``workers_lines``, and of ``not_graded``: the students the source
    names who have no grade, each with why, ``grader.batch.run.not_graded``). ``flags``: the pairs of
    students with similar code (``grader.batch.similarity``), listed when there are some (whether they
    were computed at all, ``grade batch`` says after this text)."""
    s = summary
    out: list[str | None] = [f"Class: {s.students} student{'s' if s.students != 1 else ''}, {s.scored} with a score"]
    if s.scored:
        out.append(f"Scores (of {_n(s.max_score)}): mean {_n(s.mean)}, median {_n(s.median)}, "
                   f"min {_n(s.min)}, max {_n(s.max)}")
    out.append("Statuses: " + ", ".join(f"{c.status} {c.count}" for c in s.statuses))
    for c in s.statuses:
        if c.examples:
            out.append(_examples_line(f"  {c.status}: ", c.examples))
    out += handed_lines(s)
    rt = s.runtimes
    if rt.max is not None:
        out.append(f"Runtime: median {_secs(rt.median)}, 90th percentile {_secs(rt.p90)}, max {_secs(rt.max)}")
        out.append(_fit("  slowest: " + ", ".join(f"{_short_id(i)} ({_secs(t)})" for i, t in rt.slowest)))
    if s.histogram and s.scored:
        out += ["", "Score histogram"]
        labels = [f"{_n(b.low)}-{_n(b.high)}" for b in s.histogram]
        wide = max(len(x) for x in labels)
        counts = max(len(str(b.count)) for b in s.histogram)
        room = min(WIDTH - wide - counts - 6, 50)
        most = max(b.count for b in s.histogram) or 1
        for label, b in zip(labels, s.histogram):
            bar = "█" * round(room * b.count / most)
            out.append(f"  {label:>{wide}} | {b.count!s:>{counts}} {bar}".rstrip())
    if s.cases:
        out += ["", "Pass rate per case (lowest first)"]
        if s.ungraded:
            out += textwrap.wrap(_rates_of(s), WIDTH, initial_indent="  ", subsequent_indent="  ")
        for c in s.cases:
            hidden = f" {hidden_label()}" if c.visibility == "hidden" else ""
            out.append(_fit(f"  {_pct(c.rate):>4}  {f'{c.passed}/{c.graded}':>9}  {c.name}{hidden}"))
    for heading, tallies in (("Recognised mistakes (students)", s.mistakes),
                             ("Other causes of lost points (students)", s.causes)):
        if tallies:
            out += ["", heading]
            for t in tallies:
                out.append(_fit(f"  {t.students:>4}  {t.title}"))
                out.append(_examples_line("        ", t.examples))
    if flags:
        out += ["", f"Similar code ({_count(len(flags), 'pair')}; each one's share of code found in the other's)"]
        out += [_fit(f"  {_short_id(safe_text(f.student_a, one_line=True))} ({_pct(f.similarity_a)}) and "
                     f"{_short_id(safe_text(f.student_b, one_line=True))} ({_pct(f.similarity_b)})") for f in flags]
    if not_graded:
        out += ["", f"Not graded ({_count(len(not_graded), 'student')}: see why, put it right, run again)"]
        out += [f"  {safe_text(sid, one_line=True)}: {safe_text(why, one_line=True)}" for sid, why in not_graded]
    if workers is not None and workers.graded:
        out += ["", f"This run: {workers.graded} graded"] + workers_lines(workers)
    return "\n".join(line for line in out if line is not None) + "\n"


_STYLE = """
.grader-class{font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1f24;max-width:72rem;line-height:1.4}
.grader-class h1{font-size:1.4rem;margin-bottom:.2rem} .grader-class .meta{color:#57606a;margin-bottom:1rem}
.grader-class h2{font-size:1.15rem;margin:1.4rem 0 .4rem}
.grader-class table{border-collapse:collapse;width:100%;margin:.6rem 0}
.grader-class th,.grader-class td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;
vertical-align:top;overflow-wrap:anywhere} .grader-class th{overflow-wrap:normal}
.grader-class table.students td:nth-child(4),.grader-class table.students td:last-child{white-space:nowrap}
.grader-class td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.grader-class .bar{background:#eaeef2;border-radius:3px;height:.8rem;min-width:8rem}
.grader-class .bar span{display:block;height:100%;border-radius:3px;background:#1a7f37}
.grader-class .bar span.low{background:#cf222e} .grader-class .bar span.mid{background:#d4a72c}
.grader-class .hidden{color:#57606a;font-size:.85rem} .grader-class .examples{color:#57606a}
.grader-class svg.hist{max-width:100%;height:auto}
.grader-class svg.hist rect{fill:#0969da} .grader-class svg.hist text{font-size:11px;fill:#1b1f24}
.grader-class svg.hist line{stroke:#57606a}
.grader-class .cards{display:flex;gap:1rem;flex-wrap:wrap}
.grader-class .card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .9rem;min-width:7rem}
.grader-class .card b{display:block;font-size:1.3rem} .grader-class .trouble b{color:#cf222e}
.grader-class tr.trouble td{background:#fff5f5}
.grader-class .late{background:#fff1e5;color:#953800;border:1px solid #ffb77c;border-radius:1em;padding:0 .45em;
font-size:.8rem;white-space:nowrap} .grader-class span.meta{color:#57606a;font-size:.85rem}
"""


def summary_html(summary: ClassSummary, assignment: str, not_graded: Sequence[tuple[str, str]] = (),
                 flags: Sequence[Flag] | None = None) -> str:
    """The class page: one self-contained HTML file (inline CSS and SVG, no scripts, nothing fetched);
    ``not_graded``: as ``summary_text``'s; ``flags``: the pairs of students with similar code, in their
    order (``grader.batch.similarity``; None: they were not computed, and the page says so)."""
    e = html.escape
    s = summary
    lines = {x.student_id: x for x in s.students_list}
    parts = [f"<style>{_STYLE}</style><div class='grader-class'>",
             f"<h1>Class summary: {e(safe_text(assignment, one_line=True))}</h1>",
             f"<div class='meta'>{s.students} student{'s' if s.students != 1 else ''} · {s.scored} with a score"
             + (f" · mean {_n(s.mean)}, median {_n(s.median)}, min {_n(s.min)}, max {_n(s.max)} of {_n(s.max_score)}"
                if s.scored else "") + "</div>"]
    parts.append("<h2>Statuses</h2><div class='cards'>")
    for c in s.statuses:
        trouble = " trouble" if c.status in TROUBLE and c.count else ""
        ex = (f"<div class='examples'>e.g. {e(', '.join(c.examples))}</div>" if c.examples else "")
        parts.append(f"<div class='card{trouble}'><b>{c.count}</b>{e(c.status)}{ex}</div>")
    late = sum(x.handed.late for x in s.students_list)
    if late:
        parts.append(f"<div class='card'><b>{late}</b>late</div>")
    parts.append("</div>")
    parts += [f"<p class='meta'>{e(line)}</p>" for line in _resubmitted_lines(s)]
    if not_graded:
        parts.append(f"<h2>Not graded ({_count(len(not_graded), 'student')})</h2><table><thead><tr><th>Student</th>"
                     "<th>Why (put it right and run the batch again)</th></tr></thead><tbody>")
        parts += [f"<tr><td>{e(safe_text(sid, one_line=True))}</td><td>{e(safe_text(why, one_line=True))}</td></tr>"
                  for sid, why in not_graded]
        parts.append("</tbody></table>")
    attention = needs_attention(s, flags or ())
    if attention:
        parts.append(f"<h2>Needs attention ({_count(len(attention), 'student')})</h2><table class='attention'>"
                     "<thead><tr><th>Student</th><th>Why</th><th>Feedback</th></tr></thead><tbody>")
        parts += [f"<tr><td>{e(safe_text(sid, one_line=True))}</td><td>{e(why)}</td>"
                  f"<td>{_feedback_link(lines[sid]) if sid in lines else ''}</td></tr>"
                  for sid, why in attention.items()]
        parts.append("</tbody></table>")
    parts.append(_similar_html(flags, lines))
    if s.histogram and s.scored:
        parts += ["<h2>Scores</h2>", histogram_svg(s.histogram)]
    if s.cases:
        parts.append("<h2>Pass rate per case (lowest first)</h2>"
                     + (f"<p class='meta'>{e(_rates_of(s))}</p>" if s.ungraded else ""))
        parts.append("<table><thead><tr><th>Case</th><th>Points</th>"
                     "<th>Passed</th><th>Rate</th><th></th></tr></thead><tbody>")
        for c in s.cases:
            hidden = f" <span class='hidden'>{e(hidden_label())}</span>" if c.visibility == "hidden" else ""
            width = 0 if c.rate is None else round(c.rate * 100, 1)
            tone = "" if c.rate is None or c.rate >= 0.8 else " mid" if c.rate >= 0.5 else " low"
            parts.append(f"<tr><td>{e(c.name)}{hidden}</td><td class='num'>{_n(c.max_score)}</td>"
                         f"<td class='num'>{c.passed}/{c.graded}</td><td class='num'>{_pct(c.rate)}</td>"
                         f"<td><div class='bar'><span class='{tone.strip()}' style='width:{width}%'></span></div>"
                         "</td></tr>")
        parts.append("</tbody></table>")
    for heading, tallies in (("Recognised mistakes", s.mistakes), ("Other causes of lost points", s.causes)):
        if tallies:
            parts.append(f"<h2>{heading}</h2><table><thead><tr><th>Students</th><th>What</th><th>For example</th>"
                         "</tr></thead><tbody>")
            parts += [f"<tr><td class='num'>{t.students}</td><td>{e(t.title)}</td>"
                      f"<td class='examples'>{e(', '.join(t.examples))}</td></tr>" for t in tallies]
            parts.append("</tbody></table>")
    if s.students_list:
        parts.append(f"<h2>Students ({len(s.students_list)})</h2><table class='students'><thead><tr><th>Student</th>"
                     "<th>Name</th><th>Score</th><th>Status</th><th>Main cause of lost points</th><th>Handed in</th>"
                     "<th>Feedback</th></tr></thead><tbody>")
        for x in s.students_list:
            score = "" if x.score is None else f"{_n(x.score)}/{_n(x.max_score)}"
            trouble = " class='trouble'" if x.student_id in attention else ""
            parts.append(f"<tr{trouble}><td>{e(safe_text(x.student_id, one_line=True))}</td><td>{e(x.name)}</td>"
                         f"<td class='num'>{score}</td>"
                         f"<td>{e(x.status)}</td><td>{e(x.cause)}</td><td>{_handed_html(x.handed)}</td>"
                         f"<td>{_feedback_link(x)}</td></tr>")
        parts.append("</tbody></table>")
    rt = s.runtimes
    if rt.max is not None:
        slowest = ", ".join(f"{e(i)} ({_secs(t)})" for i, t in rt.slowest)
        parts.append(f"<h2>Runtime per submission</h2><table><tbody><tr><td>median</td><td class='num'>"
                     f"{_secs(rt.median)}</td></tr><tr><td>90th percentile</td><td class='num'>{_secs(rt.p90)}"
                     f"</td></tr><tr><td>max</td><td class='num'>{_secs(rt.max)}</td></tr><tr><td>slowest</td>"
                     f"<td class='examples'>{slowest}</td></tr></tbody></table>")
    parts.append("</div>")
    title = e(safe_text(assignment, one_line=True))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Class summary: {title}</title>"
            "</head><body style='margin:2rem'>\n" + "\n".join(parts) + "\n</body></html>\n")


def _handed_html(h: Handed) -> str:
    """The file graded and its late badge, then its resubmission and the files not graded (named on hover)."""
    e = html.escape
    head = ([f"<span class='file'>{e(h.file)}</span>"] if h.file else []) + (["<span class='late'>late</span>"]
                                                                            if h.late else [])
    notes = [f"resubmission {h.resubmission}"] if h.resubmission else []
    if h.others_count:
        more = h.others_count - len(h.others)
        names = "; ".join(h.others) + (f"; and {more} more" if more > 0 else "")
        notes.append(f"<span title='{e(names, quote=True)}'>{_count(h.others_count, 'other file')} not graded</span>")
    return " ".join(head + ([f"<span class='meta'>{' · '.join(notes)}</span>"] if notes else []))


def _rates_of(s: ClassSummary) -> str:
    """Why the rates' denominators are below the class's size."""
    n = s.ungraded
    return (f"Rates are of the students each case was graded for: {_count(n, 'student')} of {s.students} had no "
            "case graded (an unreadable file, or the grader's failure; see the statuses).")


#: Why a status needs the TA, in words.
_ATTENTION = {"unreadable": "the file could not be read: ask for it again", "timeout": "ran out of time",
              "error": "the submission crashed or ran out of memory", "internal": "the grader failed: run again"}


def _attention(x: StudentLine) -> str:
    """Why a student needs the TA's attention for their status or a forbidden API, in words ("" if not)."""
    return _ATTENTION.get(x.status, "") or (f"forbidden API: {x.forbidden}" if x.forbidden else "")


def needs_attention(summary: ClassSummary, flags: Sequence[Flag] = ()) -> dict[str, str]:
    """Who needs the TA's attention, by student id as stored (in id order), and why: a status problem or a
    forbidden API (``StudentLine.status``, ``StudentLine.forbidden``), and code similar to others'
    (``similarity_reasons``), joined by "; " when a student has both."""
    similar = similarity_reasons(flags)
    why = {x.student_id: _attention(x) for x in summary.students_list}
    for sid, reason in similar.items():
        why[sid] = "; ".join(r for r in (why.get(sid, ""), reason) if r)
    return {sid: why[sid] for sid in sorted(why) if why[sid]}


def similarity_reasons(flags: Sequence[Flag]) -> dict[str, str]:
    """Each flagged student's reason to be looked at, by student id as stored: their share of code found in
    each other student's, in the flags' order ("similar code: 93% shared with bob, 85% with cy"), the first
    ``EXAMPLES`` others named."""
    shares: dict[str, list[tuple[float, str]]] = {}
    for f in flags:
        shares.setdefault(f.student_a, []).append((f.similarity_a, f.student_b))
        shares.setdefault(f.student_b, []).append((f.similarity_b, f.student_a))
    reasons = {}
    for sid, pairs in shares.items():
        said = [f"{_pct(share)} {'shared with' if i == 0 else 'with'} {safe_text(other, one_line=True)}"
                for i, (share, other) in enumerate(pairs[:EXAMPLES])]
        more = f", and {_count(len(pairs) - EXAMPLES, 'other')} (see Similar code)" if len(pairs) > EXAMPLES else ""
        reasons[sid] = "similar code: " + ", ".join(said) + more
    return reasons


def _similar_html(flags: Sequence[Flag] | None, lines: Mapping[str, StudentLine]) -> str:
    """The similar pairs, each student linked to their feedback page; one line when there are none, or
    when they were not computed."""
    if flags is None:
        return ("<p class='meta'>Similar code: not computed (copydetect is not installed: "
                "pip install copydetect, the grader's [batch] extra).</p>")
    if not flags:
        return "<p class='meta'>Similar code: none flagged.</p>"
    parts = [f"<h2>Similar code ({_count(len(flags), 'pair')})</h2><p class='meta'>Pairs of students whose graded "
             "code is alike, the template's code left out; a share is how much of that student's code is also in "
             "the other's. For a person to look at, never a verdict.</p><table class='similar'><thead><tr>"
             "<th>Student</th><th>Share</th><th>Student</th><th>Share</th></tr></thead><tbody>"]
    for f in flags:
        parts.append("<tr>" + "".join(f"<td>{_student_link(sid, lines.get(sid))}</td><td class='num'>{_pct(share)}</td>"
                                      for sid, share in ((f.student_a, f.similarity_a), (f.student_b, f.similarity_b)))
                     + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _feedback_href(student_id: str) -> str:
    """Where a student's feedback page is, beside class.html, escaped for an attribute."""
    from grader.batch.feedback import feedback_name

    return f"feedback/{html.escape(feedback_name(student_id))}.html"


def _feedback_link(x: StudentLine) -> str:
    """A link to the student's feedback page, beside class.html (none for the grader's own failure)."""
    return "" if x.status == "internal" else f"<a href='{_feedback_href(x.student_id)}'>page</a>"


def _student_link(student_id: str, line: StudentLine | None) -> str:
    """The student's id (made safe, escaped), linked to their feedback page where they have one."""
    shown = html.escape(safe_text(student_id, one_line=True))
    if line is None or line.status == "internal":
        return shown
    return f"<a href='{_feedback_href(student_id)}'>{shown}</a>"


#: The histogram's text size (px), and a generous width of one of its characters (digits, ".", "–") in ems:
#: a bar is at least as wide as its longest range label, so that labels never run into each other.
_HIST_FONT, _HIST_CHAR_EM = 11, 0.65


def histogram_svg(bins: Sequence[Bin]) -> str:
    """The histogram as inline SVG: a bar per bin, its count above, its range below. Bars are wide enough for
    the longest range label (``11.25–12.5``); the page's CSS shrinks the whole drawing to fit a narrow window."""
    labels = [f"{_n(b.low)}–{_n(b.high)}" for b in bins]
    bar = max(48, math.ceil(_HIST_CHAR_EM * _HIST_FONT * max(map(len, labels), default=0)))
    gap, height, top_pad, bottom = 6, 160, 18, 34
    width = len(bins) * (bar + gap) + gap
    most = max(b.count for b in bins) or 1
    shapes = [f"<line x1='0' y1='{top_pad + height}' x2='{width}' y2='{top_pad + height}'/>"]
    for i, (b, label) in enumerate(zip(bins, map(html.escape, labels))):
        x = gap + i * (bar + gap)
        h = round(height * b.count / most, 1)
        y = top_pad + height - h
        shapes.append(f"<rect x='{x}' y='{y}' width='{bar}' height='{h}'><title>{label}: {b.count}</title></rect>"
                      f"<text x='{x + bar / 2}' y='{y - 4}' text-anchor='middle'>{b.count}</text>"
                      f"<text x='{x + bar / 2}' y='{top_pad + height + 16}' text-anchor='middle'>{label}</text>")
    total = top_pad + height + bottom
    return (f"<svg class='hist' role='img' aria-label='score histogram' width='{width}' height='{total}' "
            f"viewBox='0 0 {width} {total}'>{''.join(shapes)}</svg>")
