"""`grade validate` names every case the released template passes, apart from other failures."""
from __future__ import annotations

import re
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


def _gru_course(tmp_path, change=None, mistakes: str = ""):
    root = tmp_path / "course"
    shutil.copytree(ROOT / "assignments" / "gru", root / "assignments" / "gru")
    (root / "reference").mkdir()
    nb = nbformat.read(ROOT / "reference" / "gru.ipynb", 4)
    if change:
        for cell in nb.cells:
            cell.source = cell.source.replace(*change)
    nbformat.write(nb, root / "reference" / "gru.ipynb")
    if mistakes:
        (root / "assignments" / "gru" / "mistakes.toml").write_text(mistakes)
    return root


def test_validate_says_why_the_reference_fails_each_case(tmp_path):
    # a reference that names an API its own case file forbids fails its policy case
    root = _gru_course(tmp_path, ("self.bias_hh = nn.Parameter(torch.empty(3*hdim))",
                                  "self.bias_hh = nn.Parameter(torch.empty(3*hdim)); self.cell = torch.gru_cell"))
    findings = {f.check: f for f in validate(get_assignment(course(root), "gru"), GradeConfig(root=root))}
    full = findings["the reference gets full marks"]
    assert not full.ok and "not passed: " in full.detail
    failed = full.detail.partition("not passed: ")[2].split(" | ")
    assert failed and all(re.fullmatch(r".+ \[[\w-]+\]: .{10,}", part) for part in failed), full.detail
    assert "[gru-policy]: " in full.detail and "torch.gru_cell" in full.detail, full.detail  # why, not only which


def test_validate_flags_a_known_mistake_that_changes_nothing(tmp_path):
    mistakes = ('[[mistakes]]\nid = "reordered"\nname = "the same sum, written the other way"\nhint = "h"\n'
                'edits = [{ find = "h_next = (1 - z) * n + z * h", replace = "h_next = z * h + (1 - z) * n" }]\n'
                '[[mistakes]]\nid = "swapped-gate"\nname = "z and 1 - z swapped"\nhint = "h"\n'
                'edits = [{ find = "h_next = (1 - z) * n + z * h", replace = "h_next = z * n + (1 - z) * h" }]\n')
    root = _gru_course(tmp_path, mistakes=mistakes)
    findings = {f.check: f for f in validate(get_assignment(course(root), "gru"), GradeConfig(root=root))}
    silent = findings["every known mistake changes what some case sees"]
    assert not silent.ok and "reordered gives the reference's results in every case" in silent.detail
    assert "swapped-gate" not in silent.detail
