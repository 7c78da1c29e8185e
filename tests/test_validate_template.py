"""`grade validate` names every case the released template passes, apart from other failures."""
from __future__ import annotations

import shutil

import nbformat
from conftest import ROOT, course

from grader.authoring.validate import validate
from grader.config import GradeConfig
from grader.course.assignments import get_assignment

CHECK = "the released template gets 0, every case 'not implemented yet'"


def test_validate_names_the_cases_a_template_gives_away(tmp_path):
    root = tmp_path / "course"
    shutil.copytree(ROOT / "assignments" / "gru", root / "assignments" / "gru")
    (root / "reference").mkdir()
    # Only the `return` is a solution line: the template keeps every gate and the parameters,
    # so the parameter case passes on code the template gives, and the others get None.
    nb = nbformat.read(ROOT / "reference" / "gru.ipynb", 4)
    for cell in nb.cells:
        cell.source = cell.source.replace("  # SOLUTION", "").replace(
            "        return h_next", "        return h_next  # SOLUTION")
    nbformat.write(nb, root / "reference" / "gru.ipynb")

    findings = {f.check: f for f in validate(get_assignment(course(root), "gru"), GradeConfig(root=root))}
    assert findings["the reference gets full marks"].ok
    verdict = findings[CHECK]
    assert not verdict.ok
    gives_away, _, others = verdict.detail.partition("Not 'not implemented yet'")
    assert "The template passes" in gives_away and "fix the case or the template" in gives_away
    assert "GRUCell: parameter names and shapes (as torch.nn.GRUCell) [gru-params]" in gives_away
    assert "[gru-state]" not in gives_away
    assert "GRUCell: h_next from a given state [gru-state]" in others and "[gru-params]" not in others
