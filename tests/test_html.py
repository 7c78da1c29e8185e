"""The HTML feedback file: self-contained, the attention maps drawn, and it renders in Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from grader import grade_submission
from grader.report.render import render


@pytest.fixture(scope="module")
def page():
    return render(grade_submission(ROOT / "tests" / "submissions" / "mha" / "bug_mask_zero_fill.py"), "html")


def test_self_contained(page):
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert not re.search(r"(src|href)=['\"](https?:)?//", page)  # nothing fetched from anywhere
    assert "<script" not in page


def test_failed_attention_cases_show_both_maps_with_masked_cells(page):
    assert page.count("<section class='cause'") == 1  # one mistake explains the four failed mask cases
    assert page.count("<table class='heat'>") == 8    # reference and yours, for each of them
    assert "class='masked off'" in page               # masked cells that got weight are marked
    # ... and their weight, the number that is the bug, is readable on the light hatching: never white
    masked = re.findall(r"<td class='masked[^']*' style='([^']*)'[^>]*>×([\d.]+)<", page)
    assert masked and all("color:#fff" not in style for style, _ in masked)
    assert any("font-weight:700" in style and float(v) > 0.05 for style, v in masked)
    assert "1. Known mistake: masked scores filled with 0 instead of -1e9</h3>" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="Chromium is not installed (apt-get install chromium)")
def test_renders_in_headless_chromium(page, tmp_path):
    path = tmp_path / "feedback.html"
    path.write_text(page, encoding="utf-8")
    p = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                       capture_output=True, text=True, timeout=60)
    assert "Feedback on" in p.stdout and p.stdout.count('class="heat"') == 8


def test_code_in_a_cause_reads_as_code_and_stays_inert():
    """The messages put the student's line between backticks: the page shows it as code, not as backticks,
    and what is inside stays text."""
    import dataclasses

    from golden_reports import SAMPLE

    page = render(SAMPLE, "html")
    where = re.search(r"<p><b>Where:</b> (.*?)</p>", page).group(1)
    assert where == "cell 7, line 3 (forward): <code>y = x @ w</code>"
    hostile = dataclasses.replace(SAMPLE.causes[1], where="cell 7, line 3: `<script>alert(1)</script>` and `x")
    page = render(dataclasses.replace(SAMPLE, causes=(SAMPLE.causes[0], hostile)), "html")
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code> and `x" in page and "<script>" not in page


def test_the_unfilled_templates_page_leads_with_not_implemented_and_no_reference_maps_alone():
    """Maps come in pairs, the reference's beside the student's: a class that never ran shows none, so
    "not implemented yet" is what the page says first."""
    from grader.report.audience import for_audience

    page = render(for_audience(grade_submission(ROOT / "assignments" / "mha" / "mha.ipynb"), "student"), "html")
    assert "<table class='heat'>" not in page and "is not implemented yet" in page
