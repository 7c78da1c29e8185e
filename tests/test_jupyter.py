"""``check()`` in a real Jupyter kernel shows the HTML report; elsewhere it prints text."""
from __future__ import annotations

import nbformat
import pytest

from conftest import ROOT, SUBMISSIONS
from grader import local

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
