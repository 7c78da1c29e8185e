"""`grade release` never publishes the solution by accident, and what it writes is world-readable."""
from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from conftest import ROOT, course, run_grade
from grader.authoring.release import blank_solutions, release, scan_markers
from grader.authoring.validate import validate
from grader.config import GradeConfig
from grader.course.assignments import get_assignment
from grader.errors import UsageError

GRU_CELL = 4  # the reference's cell that defines GRUCell (cell numbers count every cell from 1)


def _gru_course(tmp_path, edit=None):
    """A course holding only the GRU, whose reference's GRUCell cell's lines ``edit`` may change."""
    root = tmp_path / "course"
    shutil.copytree(ROOT / "assignments" / "gru", root / "assignments" / "gru")
    shutil.copytree(ROOT / "reference", root / "reference")
    if edit is not None:
        path = root / "reference" / "gru.ipynb"
        nb = json.loads(path.read_text())
        cell = nb["cells"][GRU_CELL - 1]
        lines = edit("".join(cell["source"]).split("\n"))
        cell["source"] = "\n".join(lines)
        path.write_text(json.dumps(nb))
    return root


def _unmarked(lines):
    return [line.replace("  # SOLUTION", "") for line in lines]


def _insert(at, *new):
    """An edit inserting ``new`` lines before line ``at`` (from 1) of the GRUCell cell."""
    return lambda lines: lines[:at - 1] + list(new) + lines[at - 1:]


def _release(root, out, *more):
    return run_grade("release", "gru", "--out", str(out), "--root", str(root), *more, timeout=300)


def _nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".release-" in p.name]  # no staging folder left behind


def test_refuses_a_class_without_markers_and_writes_nothing(tmp_path):
    root = _gru_course(tmp_path, _unmarked)
    out = tmp_path / "dist" / "gru"
    p = _release(root, out)
    assert p.returncode == 2, p.stderr
    assert "reference/gru.ipynb, cell 4, line 1" in p.stderr and "class GRUCell has no solution marker" in p.stderr
    assert "--force" in p.stderr
    assert not (tmp_path / "dist").exists()  # not even the parent made for it
    _nothing_written(tmp_path, out)


def test_an_existing_folder_is_left_as_it_was(tmp_path):
    root = _gru_course(tmp_path, _unmarked)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    p = _release(root, out)
    assert p.returncode == 2, p.stderr
    assert [x.name for x in out.rglob("*")] == ["old.txt"] and (out / "old.txt").read_text() == "kept"


# Line numbers are within cell 4: line 23 is the comment before `gi = ...  # SOLUTION`, line 31 `h_next = ...`.
@pytest.mark.parametrize("edit, line, words, count", [
    (_insert(23, "        # BEGIN SOLUTION"), 23, "has no `# END SOLUTION`", 1),
    (_insert(23, "        # END SOLUTION"), 23, "without a `# BEGIN SOLUTION`", 1),
    (_insert(23, "        # BEGIN SOLUTION", "        # BEGIN SOLUTION", "        # END SOLUTION"), 24,
     "inside the block that line 23 opens", 1),
    (_insert(23, "        # BEGIN SOLUTON", "        x = 1", "        # END SOLUTION"), 23,
     "misspelled `# BEGIN SOLUTION`", 2),  # and the END at line 25 then has no BEGIN
    (lambda lines: [line.replace("z * h  # SOLUTION", "z * h  #SOLUTION") for line in lines], 31,
     "misspelled `# SOLUTION`", 1),
    (_insert(23, "        # begin solution"), 23, "misspelled `# BEGIN SOLUTION`", 1),
], ids=["begin-without-end", "end-without-begin", "begin-in-begin", "typo-soluton", "typo-no-space", "typo-case"])
def test_refuses_broken_markers_naming_file_cell_and_line(tmp_path, edit, line, words, count):
    root = _gru_course(tmp_path, edit)
    out = tmp_path / "bundle"
    p = _release(root, out, "--force")  # --force does not override broken markers
    assert p.returncode == 2, p.stderr
    assert f"reference/gru.ipynb, cell 4, line {line}: " in p.stderr and words in p.stderr, p.stderr
    assert p.stderr.count("reference/gru.ipynb, cell 4, line") == count, p.stderr
    assert "cannot override" in p.stderr
    _nothing_written(tmp_path, out)


def test_refuses_a_template_that_earns_points(tmp_path):
    # The only marker makes `# FILL IN HERE` followed by code: a kept comment, so the template is the solution.
    root = _gru_course(tmp_path, lambda lines: _insert(21, "        pass  # SOLUTION")(_unmarked(lines)))
    out = tmp_path / "bundle"
    p = _release(root, out)
    assert p.returncode == 2, p.stderr
    assert "the released template passes 7 cases" in p.stderr and "GRUCell: h_next from a given state [gru-state]" \
        in p.stderr, p.stderr
    _nothing_written(tmp_path, out)


def test_force_releases_with_a_loud_warning(tmp_path):
    root = _gru_course(tmp_path, _unmarked)
    out = tmp_path / "bundle"
    p = _release(root, out, "--force")
    assert p.returncode == 0, p.stderr
    assert "WARNING" in p.stderr and "MAY CONTAIN THE SOLUTION" in p.stderr
    assert "class GRUCell has no solution marker" in p.stderr and "the released template passes 7 cases" in p.stderr
    assert "WARNING" not in p.stdout and (out / "gru.ipynb").is_file()
    assert "torch.sigmoid(i_r + h_r)" in (out / "gru.ipynb").read_text()  # what the warning warns of


def _modes(out):
    return {str(p.relative_to(out)): stat.S_IMODE(os.stat(p).st_mode) for p in [out, *out.rglob("*")]}


def test_released_files_are_world_readable_whatever_the_umask(tmp_path):
    a = get_assignment(course(), "gru")
    old = os.umask(0o077)
    try:
        release(a, tmp_path / "new", GradeConfig())
        existing = tmp_path / "existing"
        existing.mkdir()
        release(a, existing, GradeConfig())  # into a folder that exists: merged, same modes
        release(a, existing, GradeConfig())  # and again, over the files of the first release
    finally:
        os.umask(old)
    for out in (tmp_path / "new", existing):
        modes = _modes(out)
        assert {"gru.ipynb", "assignments/gru/public.safetensors", "assignments/gru/cases.toml"} <= set(modes)
        folders = {k for k in modes if (out / k).is_dir()} - ({"."} if out == existing else set())
        assert {k: v for k, v in modes.items() if k in folders} == dict.fromkeys(folders, 0o755)
        assert {k: v for k, v in modes.items() if not (out / k).is_dir()} == dict.fromkeys(
            [k for k in modes if not (out / k).is_dir()], 0o644)
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o700  # a folder it did not make keeps its mode


def test_validate_reports_what_release_refuses(tmp_path):
    root = _gru_course(tmp_path, _unmarked)
    findings = {f.check: f for f in validate(get_assignment(course(root), "gru"), GradeConfig(root=root))}
    marker = findings["every graded class has a solution marker in the reference"]
    assert not marker.ok and "reference/gru.ipynb, cell 4, line 1: class GRUCell" in marker.detail
    assert not findings["the released template gets 0, every case 'not implemented yet'"].ok
    broken = _gru_course(tmp_path / "broken", _insert(23, "        # BEGIN SOLUTION"))
    findings = {f.check: f for f in validate(get_assignment(course(broken), "gru"), GradeConfig(root=broken))}
    bad = findings["the reference's solution markers are balanced and spelled right"]
    assert not bad.ok and "cell 4, line 23" in bad.detail


def test_scan_markers_and_blank_solutions_agree():
    source = "a = 1\n# BEGIN SOLUTION\nb = 2\n# END SOLUTION\nc = 3  # SOLUTION\n# a plain comment"
    kinds, problems = scan_markers(source)
    assert kinds == [None, "begin", "inside", "end", "line", None] and problems == []
    assert blank_solutions(source) == "a = 1\n# FILL IN HERE\nc = # FILL IN HERE\n# a plain comment"
    assert scan_markers("# BEGIN SOLUTION\nb = 2  # SOLUTION\n# END SOLUTION")[1] == []
    for fine in ("# the solution is below", "# a solution", "# SOLUTION of the exercise follows"):
        assert scan_markers(fine)[1] == [], fine
    with pytest.raises(UsageError, match="line 2: .*has no `# END SOLUTION`"):
        blank_solutions("x = 1\n# BEGIN SOLUTION\ny = 2")
