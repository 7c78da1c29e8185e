"""``check()`` in a real Jupyter kernel shows the HTML report; elsewhere it prints text."""
from __future__ import annotations

import os
import types

import nbformat
import pytest

from conftest import ROOT, SUBMISSIONS, run_grade
from grader import local
from grader.config import GradeConfig
from grader.model.messages import note_text
from grader.model.outcomes import GradedSource

BUGGY = SUBMISSIONS / "mha" / "bug_softmax_dim.py"


def test_check_in_a_kernel_shows_the_page_with_its_attention_maps():
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' installs the kernel client")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"from grader import check\nr = check({str(BUGGY)!r})\nprint(r)")]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
                            ).execute()
    outputs = nb.cells[0].outputs
    shown = [o for o in outputs if o.get("output_type") == "display_data"]
    assert len(shown) == 1 and "text/html" in shown[0]["data"], outputs
    page = shown[0]["data"]["text/html"]
    assert "class='grader-report'" in page and "<!DOCTYPE" not in page  # a fragment, its style scoped
    assert "Known mistake: softmax over the wrong dimension" in page and "table class='heat'" in page
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert printed.startswith("<Report mha: 7/28") and "What to fix" not in printed  # no second, text report


def test_check_outside_a_kernel_prints_text(capsys):
    assert not local.in_jupyter_kernel()
    report = local.check(BUGGY)
    out = capsys.readouterr().out
    assert "What to fix" in out and "<div" not in out
    assert repr(report).startswith("<Report mha: 7/28")


FILLED = SUBMISSIONS / "mha" / "filled.ipynb"
DIFFERS = "the saved notebook differs from the code you ran: save it before you submit"


def _code_cells(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_check_in_a_kernel_grades_what_ran_not_the_stale_template_on_disk(tmp_path):
    """Issue 10, item 5: the unfilled template is saved, the filled cells ran: full public marks, and a warning."""
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' installs the kernel client")
    bundle = tmp_path / "bundle"
    released = run_grade("release", "mha", "--out", str(bundle))
    assert released.returncode == 0, released.stderr
    template = bundle / "mha.ipynb"
    assert "FILL IN" in template.read_text(encoding="utf-8")  # on disk: the template, never filled in
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _code_cells(FILLED)]
    nb.cells += [nbformat.v4.new_code_cell("from grader import check\nr = check()\nprint(repr(r))\n"
                                           "print('NOTES', r.notes)"),
                 nbformat.v4.new_code_cell("print('USAGE', check(assignment='no_such_assignment'))")]
    # A student's machine: no $GRADER_ROOT; the kernel runs in the released bundle, its notebook the template.
    env = {k: v for k, v in os.environ.items() if k != "GRADER_ROOT"}
    env["JPY_SESSION_NAME"] = str(template)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(bundle)}}
                            ).execute(env=env)
    outputs = nb.cells[-2].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert printed.startswith("<Report mha: 23/23 for mha.ipynb, as run in this kernel>"), outputs
    assert "the kernel's input history" in printed and DIFFERS in printed.lower()
    page = next(o for o in outputs if o.get("output_type") == "display_data")["data"]["text/html"]
    assert "kernel's input history" in _text_of(page), page  # what the page shows, however it is escaped
    usage = nb.cells[-1].outputs  # a usage mistake: one line on stderr, no traceback
    assert [o["output_type"] for o in usage] == ["stream", "stream"], usage
    err = next(o for o in usage if o["name"] == "stderr")["text"]
    assert err.count("\n") == 1 and err.startswith("check(): ") and "no_such_assignment" in err
    assert next(o for o in usage if o["name"] == "stdout")["text"] == "USAGE None\n"


def _shell(inputs):
    """What check() reads of IPython: the input history, the running input's number."""
    history = ["", *inputs, "from grader import check\ncheck()"]
    return types.SimpleNamespace(history_manager=types.SimpleNamespace(input_hist_raw=history),
                                 execution_count=len(history) - 1, user_ns={"In": history})


def test_without_a_saved_notebook_the_history_is_graded_and_the_assignment_inferred(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Colab: nothing on disk
    for var in ("JPY_SESSION_NAME", "__vsc_ipynb_file__"):
        monkeypatch.delenv(var, raising=False)
    report = local.check_kernel(GradeConfig(), _shell(_code_cells(FILLED)))
    assert report.assignment == "mha" and report.score == report.max_score > 0
    assert report.submission == "the code run in this kernel"
    assert report.notes[0].startswith("Graded the code this kernel ran (the kernel's input history, In [1] to In [5])")
    assert "No saved notebook was found" in report.notes[0]


def test_a_kernel_that_ran_nothing_yet_grades_the_saved_notebook(tmp_path, monkeypatch):
    import shutil

    saved = tmp_path / "mha.ipynb"
    shutil.copy(FILLED, saved)
    monkeypatch.setenv("JPY_SESSION_NAME", str(saved))
    report = local.check_kernel(GradeConfig(), _shell(["%matplotlib inline", "from grader import check"]))
    assert report.submission == str(saved) and report.score == report.max_score > 0
    assert report.notes[0] == "This kernel has not run any of your code yet, so the saved notebook mha.ipynb was graded."


def test_a_usage_mistake_outside_a_kernel_still_raises(tmp_path, monkeypatch):
    from grader.errors import UsageError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(UsageError, match="cannot tell which notebook"):
        local.check()


def test_the_saved_notebook_is_compared_class_by_class(tmp_path):
    from grader.plan.slicing import parse_units
    from grader.plan.submission import history_units, read_submission

    saved = read_submission(FILLED)
    ran = parse_units(history_units(["", *_code_cells(FILLED)]))
    classes = ("ScaledDotProductAttention", "MultiHeadedAttention")
    assert local.saved_differs(saved, ran, classes) == []
    cells = _code_cells(FILLED)
    cells[-1] = cells[-1] + "\n"  # whitespace around a statement is not a difference
    assert local.saved_differs(saved, parse_units(history_units(["", *cells])), classes) == []
    rerun = ["", *cells, "class MultiHeadedAttention(nn.Module):\n    pass\n"]  # redefined after the save
    assert local.saved_differs(saved, parse_units(history_units(rerun)), classes) == ["MultiHeadedAttention"]
    template = read_submission(ROOT / "assignments" / "mha" / "mha.ipynb")
    assert local.saved_differs(template, ran, classes) == list(classes)


@pytest.mark.parametrize("note, words", [
    (GradedSource("history", "mha.ipynb", "In [1]", "In [9]", ("A", "B")),
     ["the kernel's input history, In [1] to In [9]", DIFFERS, "mha.ipynb has other code for A, B"]),
    (GradedSource("history", "mha.ipynb", "In [2]", "In [2]", ()),
     ["input history, In [2])", "mha.ipynb holds the same code"]),
    (GradedSource("history", None, "In [1]", "In [3]"),
     ["No saved notebook was found"]),
    (GradedSource("file", "mha.ipynb"), ["not run any of your code yet", "mha.ipynb was graded"]),
])
def test_the_graded_source_note(note, words):
    text = note_text(note)
    assert all(w.lower() in text.lower() for w in words), text
    assert (DIFFERS in text.lower()) == bool(note.differs)


def _text_of(page: str) -> str:
    """The text an HTML page shows (its character references decoded; tags, attributes and styles left out)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs) -> None:
            self.skip += tag in ("style", "script")

        def handle_endtag(self, tag) -> None:
            self.skip -= tag in ("style", "script") and self.skip > 0

        def handle_data(self, data) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())
