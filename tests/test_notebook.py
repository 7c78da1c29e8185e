"""`--format notebook` (``grader/report/notebook.py``): the student's own notebook, the causes under its cells.

The pure parts (reading cells and outputs, cleaning markdown, where a cause goes) are tested alone; a
hostile notebook is then graded by the `grade` command and laid out in headless Chromium, as a student
opens the page."""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from browser import browser, needs_browser
from conftest import ROOT, run_grade
from grader.model.outcomes import (CellSyntaxError, ErrorInfo, Forbidden, ForbiddenStatic, MissingTarget, Raised,
                                   Suggestion, UnitError, WrongAnswer)
from grader.report.notebook import (MAX_IMAGE_BYTES, _outputs, _python_cells, clean_markdown,
                                    fact_location, place_causes, read_cells)

PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                                     "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"))
HOSTILE_MARKDOWN = ("# Notes\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
                    "<iframe src='http://example.com'></iframe>\n\n<style>body{display:none}</style>\n\n"
                    "Some [click](javascript:alert(3)) and <a href='http://example.com' onclick='alert(4)'>web</a>, "
                    "![remote](http://example.com/x.png) <b>bold</b> `code`\n")


# --------------------------------------------------------------------------- pure


def test_markdown_keeps_prose_and_loses_everything_live():
    page = clean_markdown(HOSTILE_MARKDOWN)
    assert "<h1" in page and "<b>bold</b>" in page and "<code>code</code>" in page
    assert not re.search(r"<(script|iframe|style)|\son\w+=|href=\"?\s*javascript:|src=\"?http", page, re.I), page
    assert "href=\"http://example.com\"" in page  # a link to the web stays a link (followed only if clicked)


def test_outputs_keep_text_tracebacks_and_images_only():
    html_out = nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(1)</script>",
                                                            "text/plain": "a table"})
    js = nbformat.v4.new_output("display_data", data={"application/javascript": "alert(2)"})
    svg = nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg onload='alert(3)'/>"})
    png = nbformat.v4.new_output("display_data", data={"image/png": PNG.decode(), "text/plain": "<Figure>"})
    big = nbformat.v4.new_output("display_data", data={"image/png": "A" * (MAX_IMAGE_BYTES + 4)})
    forged = nbformat.v4.new_output("display_data", data={"image/png": "\"/><script>alert(5)</script>"})
    stream = nbformat.v4.new_output("stream", name="stdout", text="x" * 50_000)
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["\x1b[31mValueError\x1b[0m"])
    budget = {"markdown": 10**6, "images": 10**8}
    out = _outputs([html_out, js, svg, png, big, forged, error, stream], budget)
    assert out[0]["data"] == {"text/plain": "a table"}  # the HTML output's text form
    assert [o.get("data", {}).get("image/png") for o in out if "image/png" in o.get("data", {})] == [PNG.decode()]
    assert not any("application/javascript" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in out)
    text = json.dumps(out)
    assert "alert(5)" not in text and "ValueError" in text
    assert sum(len(o.get("text", "")) for o in out if o["output_type"] == "stream") < 25_000  # capped, and said so
    assert _outputs("not a list", budget) == [] and _outputs([1, None, {"output_type": "nonsense"}], budget) == []


def test_a_python_file_is_one_cell_per_definition_with_its_own_line_numbers():
    source = ("import torch\nX = 1\n\n\n# the cell\nclass A:\n    pass\n\n\n@staticmethod\ndef f():\n"
              "    return 1\ny = f()\n")
    cells = _python_cells(source, "sub.py")
    assert [(c.first_line, c.source.splitlines()[0]) for c in cells] == [
        (1, "import torch"), (5, "# the cell"), (10, "@staticmethod"), (13, "y = f()")]
    assert _python_cells("def broken(:\n", "sub.py")[0].source == "def broken(:\n"


def test_each_cause_goes_to_the_cell_and_line_its_facts_name():
    error = ErrorInfo("RuntimeError", message="boom", label="cell 4", line=3)
    assert fact_location(Raised(error, "forward")) == ("cell 4", 3)
    assert fact_location(CellSyntaxError("A", UnitError("syntax_error", "cell 2", 5))) == ("cell 2", 5)
    assert fact_location(MissingTarget("A", Suggestion("Attn", "cell 6", 1))) == ("cell 6", 1)
    assert fact_location(MissingTarget("A")) is None and fact_location(WrongAnswer()) is None
    forbidden = ForbiddenStatic("cell 3", 7, "nn.LSTMCell(1, 2)", "torch.nn.LSTMCell", "torch.nn.LSTMCell")
    assert fact_location(Forbidden(), (forbidden,)) == ("cell 3", 7)


def test_a_py_files_line_is_found_in_the_cell_that_holds_it(tmp_path):
    from grader.model.result import CaseResult, CauseSummary, Report

    cells = _python_cells("import torch\n\nclass A:\n    def f(self):\n        return 1 / 0\n", "sub.py")
    raised = CaseResult("a", "A: f", "A", "error", 0, 1, "ZeroDivisionError", cause=Raised(
        ErrorInfo("ZeroDivisionError", label="sub.py", line=5), "forward"), cause_ref=1)
    wrong = CaseResult("b", "A: g", "A", "failed", 0, 1, "wrong", cause=WrongAnswer(), cause_ref=2)
    missing = CaseResult("c", "B: h", "B", "error", 0, 1, "B is not defined", cause=MissingTarget("B"), cause_ref=3)
    report = Report("sub.py", "x", (raised, wrong, missing), causes=tuple(
        CauseSummary(n, "k", f"cause {n}", (cid,), 1) for n, cid in ((1, "a"), (2, "b"), (3, "c"))))
    placed, unplaced = place_causes(report, cells)
    # the raising line (as the file numbers it); a wrong answer under its class's cell
    assert placed == {1: (2, "sub.py, line 5"), 2: (2, "sub.py, lines 3–5")}
    assert [c.number for c in unplaced] == [3]  # a class that is not there leads the page
    assert read_cells(tmp_path / "missing.ipynb") == ([], "The submitted file's cells cannot be shown: it could not be read.")


# --------------------------------------------------------------------------- graded, and opened in a browser


def _hostile_notebook(path: Path) -> None:
    """The course's filled notebook, with a wrong line in the attention, hostile markdown, outputs and metadata."""
    nb = nbformat.read(ROOT / "tests" / "submissions" / "mha" / "filled.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "class ScaledDotProductAttention" in cell.source:
            cell.source = cell.source.replace("attention = F.softmax(scores, dim=-1)",
                                              "attention = F.softmax(scores, dim=-1).view(-1, 999983)")
            assert "999983" in cell.source
            cell.outputs = [nbformat.v4.new_output("display_data", data={
                "text/html": "<script>document.title='pwned'</script>", "text/plain": "shown as text"}),
                nbformat.v4.new_output("display_data", data={"image/png": PNG.decode()})]
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": "<script>alert(6)</script>"}}
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def graded_page(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("notebook")
    submission = folder / "hostile.ipynb"
    _hostile_notebook(submission)
    page = folder / "feedback.html"
    p = run_grade(str(submission), "--format", "notebook", "-o", str(page))
    assert p.returncode == 1 and page.is_file(), p.stdout[-2000:] + p.stderr[-2000:]
    report = json.loads(run_grade(str(submission), "--format", "json").stdout)  # the instructor's whole report
    student = run_grade(str(submission), "--format", "json", "--audience", "student").stdout
    return page, report, student


def test_the_page_holds_the_cells_and_no_hidden_value(graded_page):
    page, report, student = graded_page
    text = page.read_text()
    shown = html.unescape(re.sub(r"<[^>]+>", "", text))  # what the page says, without its markup
    assert "class ScaledDotProductAttention" in shown and "shown as text" in text and "data:image/png;base64," in text
    assert "pwned" not in text and "<script" not in text  # an HTML output shows its text form; markdown, inert
    hidden = [c for c in report["cases"] if c["visibility"] == "hidden" and c["status"] != "passed"]
    assert hidden  # the mistake shows in hidden cases too: what only they showed never reaches the page
    kept_back = [line for c in hidden for line in (c["reason"], *c["details"].splitlines(), *map(str, c["figures"]))
                 if line.strip() and json.dumps(line)[1:-1] not in student]
    assert not [line for line in kept_back if line in shown]


def test_a_py_file_with_a_wrong_answer_keeps_what_its_hidden_cases_showed(tmp_path):
    """The hidden cases' own values differ from the public ones': the page shows the public ones alone."""
    submission = ROOT / "tests" / "submissions" / "mha" / "bug_missing_lin_O.py"
    page = tmp_path / "page.html"
    assert run_grade(str(submission), "--format", "notebook", "-o", str(page)).returncode == 1
    report = json.loads(run_grade(str(submission), "--format", "json").stdout)
    student = run_grade(str(submission), "--format", "json", "--audience", "student").stdout
    shown = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    kept_back = [line for c in report["cases"] if c["visibility"] == "hidden" and c["status"] != "passed"
                 for line in c["details"].splitlines() if line.strip() and json.dumps(line)[1:-1] not in student]
    assert kept_back and not [line for line in kept_back if line in shown]
    assert "bug_missing_lin_O.py, lines 19–61" in shown and "Known mistake: output projection lin_O" in shown


@needs_browser
def test_the_cause_is_under_its_cell_with_its_line_marked_and_nothing_runs(graded_page):
    page, _, _ = graded_page
    with browser() as b:
        shown = b.open(page, [".cellname", "section.cause", ".notebook .hll", ".notebook .input_area", "h1"],
                       width=1000)
        narrow = b.open(page, [], width=800, screenshot=False)
    assert shown.scripts == 0 and shown.fetched == () and narrow.scroll_width <= narrow.client_width
    assert shown.png[:4] == b"\x89PNG" and len(shown.png) > 10_000
    [marked] = shown.boxes[".notebook .hll"]
    assert "999983" in marked.text  # the line that raised, highlighted
    cell = next(box for box in shown.boxes[".notebook .input_area"] if box.top <= marked.top <= box.bottom)
    names = [box for box in shown.boxes[".cellname"] if box.top > cell.bottom]
    card = next(box for box in shown.boxes["section.cause"] if box.top > cell.bottom)
    assert card.top - cell.bottom < 150 and (not names or card.bottom < names[0].top)  # right under its cell
    assert "RuntimeError" in card.text and "Where:" in card.text

