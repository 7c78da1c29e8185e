"""grade package gradescope: the zip Gradescope runs, unpacked into a temporary /autograder and run.

``run_autograder`` is run as Gradescope runs it (``AUTOGRADER_ROOT`` stands for ``/autograder``)
on a correct notebook, on a submission that fails only a hidden case, on an unreadable file and
on nothing; every time it must write a ``results.json`` that follows Gradescope's format, for
the student audience.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from conftest import SUBMISSIONS, run_grade

VISIBILITIES = {"visible", "hidden", "after_due_date", "after_published"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "autograder.zip"
    p = run_grade("package", "gradescope", "mha", "-o", str(out), timeout=300)
    assert p.returncode == 0, p.stderr
    return out


def autograde(bundle, tmp_path, files: dict[str, bytes]) -> dict:
    """Unpack ``bundle`` as Gradescope does, put ``files`` in submission/, run run_autograder; the results."""
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # extractall drops the modes; Gradescope's unzip keeps them
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(root / "source" / info.filename, mode)
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADER_ROOT")}
    p = subprocess.run([str(root / "source" / "run_autograder")], env={**env, "AUTOGRADER_ROOT": str(root)},
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert isinstance(results["score"], (int, float)) and isinstance(results["tests"], list)
    for t in results["tests"]:
        assert {"name", "score", "max_score", "output", "visibility", "status"} <= set(t)
        assert t["visibility"] in VISIBILITIES and t["status"] in ("passed", "failed")
    if results["tests"]:
        assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    return results


def test_the_zip_holds_what_gradescope_needs_and_runs_as_it_would(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert {"setup.sh", "run_autograder", "autograder.json", "pyproject.toml", "grader/cli.py",
            "grader/authoring/autograder.py", "course/assignments/mha/cases.toml",
            "course/reference/mha.ipynb"} <= names
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    assert any(n.startswith("cache/mha/") and n.endswith("expected.safetensors") for n in names)
    assert not any("__pycache__" in n for n in names)
    with zipfile.ZipFile(bundle) as zf:
        setup = zf.read("setup.sh").decode()
    assert "download.pytorch.org/whl/cpu" in setup and "bubblewrap" in setup and "pip install ." in setup


def test_a_correct_notebook_gets_full_marks(bundle, tmp_path):
    results = autograde(bundle, tmp_path, {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) == 28
    assert all(t["status"] == "passed" for t in results["tests"])
    hidden = [t for t in results["tests"] if t["visibility"] != "visible"]
    assert hidden and {t["visibility"] for t in hidden} == {"after_due_date"}


def test_a_hidden_failure_shows_its_name_and_points_only(bundle, tmp_path):
    results = autograde(bundle, tmp_path, {"mine.py": (SUBMISSIONS / "mha" / "bug_hardcoded_dk.py").read_bytes()})
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert results["score"] == 27 and len(failed) == 1 and failed[0]["visibility"] == "after_due_date"
    text = results["output"] + failed[0]["output"]
    assert "hidden" in text
    for detail in ("expected", "tensor(", "max abs", "differ"):
        assert detail not in failed[0]["output"].lower()


def test_an_unreadable_or_missing_submission_still_gets_results(bundle, tmp_path):
    garbled = autograde(bundle, tmp_path / "garbled", {"mha.ipynb": b"{not a notebook"})
    assert garbled["score"] == 0 and "not a valid notebook" in garbled["output"]
    nothing = autograde(bundle, tmp_path / "nothing", {"notes.txt": b"I could not finish"})
    assert nothing["score"] == 0 and nothing["tests"] == [] and "No notebook" in nothing["output"]


def test_the_autograders_own_failure_still_writes_results(bundle, tmp_path):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"{" if info.filename == "autograder.json" else src.read(info))
    results = autograde(broken, tmp_path, {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
    assert results["score"] == 0 and "autograder itself failed" in results["output"]
    assert results["stdout_visibility"] == "hidden"


def test_hidden_cases_can_stay_hidden_and_mistakes_are_usage_errors(tmp_path):
    out = tmp_path / "hidden.zip"
    p = run_grade("package", "gradescope", "mha", "-o", str(out), "--hidden", "hidden", timeout=300)
    assert p.returncode == 0, p.stderr
    results = autograde(out, tmp_path, {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
    assert {t["visibility"] for t in results["tests"]} == {"visible", "hidden"}
    assert run_grade("package", "gradescope", "nosuch", "-o", str(tmp_path / "x.zip")).returncode == 2
    assert run_grade("package", "gradescope", "mha", "-o", str(tmp_path / "x.tar")).returncode == 2
    assert not (tmp_path / "x.zip").exists()


def test_a_github_classroom_template_repository_grades_its_public_cases(tmp_path):
    repo = tmp_path / "repo"
    p = run_grade("package", "github-classroom", "mha", "-o", str(repo), timeout=300)
    assert p.returncode == 0, p.stderr
    files = {str(f.relative_to(repo)) for f in repo.rglob("*") if f.is_file()}
    assert {".github/workflows/grade.yml", "mha.ipynb", "assignments/mha/cases.toml",
            "assignments/mha/public.safetensors", ".grader/pyproject.toml", ".grader/grader/cli.py"} <= files
    assert not any(f.startswith("reference/") or "__pycache__" in f for f in files)
    workflow = (repo / ".github" / "workflows" / "grade.yml").read_text()
    for step in ("actions/checkout@v4", "download.pytorch.org/whl/cpu", "pip install ./.grader",
                 "grade mha.ipynb --root . --format junit -o grade-results.xml", "GITHUB_STEP_SUMMARY",
                 "actions/upload-artifact@v4", "exit $status"):
        assert step in workflow
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        steps = yaml.safe_load(workflow)["jobs"]["grade"]["steps"]
        assert [s.get("uses", s.get("name")) for s in steps][:2] == ["actions/checkout@v4", "actions/setup-python@v5"]
    # what the workflow's grading step does, in the repository as a student pushed it
    template = run_grade("mha.ipynb", "--root", ".", "--audience", "student", cwd=repo)
    assert template.returncode == 1 and "hidden" in template.stdout
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", repo / "mha.ipynb")
    filled = run_grade("mha.ipynb", "--root", ".", "--format", "json", cwd=repo)
    report = json.loads(filled.stdout)
    assert filled.returncode == 0 and {c["status"] for c in report["cases"]} == {"passed", "pending"}
    # the bundled grader installs as the workflow installs it (offline here: no build isolation, no deps)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                          "--no-index", str(repo / ".grader")], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert run_grade("package", "github-classroom", "mha", "-o", str(repo)).returncode == 2  # not empty any more
