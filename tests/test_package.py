"""grade package gradescope: the zip Gradescope runs, unpacked into a temporary /autograder and run.

``run_autograder`` is run as Gradescope runs it, as root (``AUTOGRADER_ROOT`` stands for
``/autograder``, a folder others may pass through, as there) on a correct notebook, on a
submission that fails only a hidden case, on an unreadable file, on nothing, on a submission
that is a link to the reference and on code that reads the reference from disk, with bubblewrap
and without; every time it must write a ``results.json`` that follows Gradescope's format, for
the student audience, and leave ``source/`` to root alone.

``setup.sh`` (apt, a virtual environment with torch and the grader from the zip) runs for real
in ``tests/install/test_gradescope.py``; here the environment at ``$AUTOGRADER_ROOT/venv`` is a
small one that imports what this interpreter imports, with this checkout's grader.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, SUBMISSIONS, readable_by_others, require_bwrap, run_grade

VISIBILITIES = {"visible", "hidden", "after_due_date", "after_published"}
READ_REFERENCE = ROOT / "tests" / "autograder" / "read_reference.py"
#: What ``read_reference.py`` scores where it cannot read the reference: its classes raise in every case,
#: and only the two "written by hand" cases (no forbidden call) pass.
UNFINISHED_SCORE = 2


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "autograder.zip"
    p = run_grade("package", "gradescope", "mha", "-o", str(out), timeout=300)
    assert p.returncode == 0, p.stderr
    return out


@pytest.fixture
def new_root():
    """Makes folders that stand for ``/autograder``: under /tmp, mode 0755 (as Gradescope's), so that a
    submission's code running as a uid of its own meets exactly the permissions the package sets."""
    made: list[Path] = []

    def make() -> Path:
        root = Path(tempfile.mkdtemp(prefix="grader-autograder-", dir="/tmp"))
        os.chmod(root, 0o755)
        made.append(root)
        return root

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


def unpack(bundle: Path, root: Path, venv: bool = True) -> None:
    """``bundle`` unpacked into ``root/source`` as Gradescope does (modes kept), an empty ``submission/``,
    and, unless ``venv`` is False, the environment setup.sh would make (here: over this interpreter)."""
    (root / "source").mkdir()
    (root / "submission").mkdir()
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # extractall drops the modes; Gradescope's unzip keeps them
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(root / "source" / info.filename, mode)
    if venv:
        this_interpreters(root / "venv")


def this_interpreters(venv: Path) -> None:
    """A virtual environment at ``venv`` that imports what this interpreter imports: this checkout's grader
    first, then this interpreter's site-packages (with their .pth files: an editable install, torch)."""
    p = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    (site_dir,) = venv.glob("lib/python*/site-packages")
    dirs = [str(ROOT), *(d for d in sys.path if d.endswith(("site-packages", "dist-packages")) and os.path.isdir(d))]
    (site_dir / "_this_interpreter.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n", encoding="utf-8")


def run_autograder(root: Path, sandbox: str | None = None) -> dict:
    """Run ``source/run_autograder`` as Gradescope does (``sandbox``: ``$GRADER_SANDBOX``); the results, checked
    against Gradescope's format."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADER_ROOT", "GRADER_SANDBOX")}
    if sandbox:
        env["GRADER_SANDBOX"] = sandbox
    p = subprocess.run([str(root / "source" / "run_autograder")], env={**env, "AUTOGRADER_ROOT": str(root)},
                       cwd="/", capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert isinstance(results["score"], (int, float)) and isinstance(results["tests"], list)
    assert isinstance(results["output"], str) and results["output"]
    for t in results["tests"]:
        assert {"name", "score", "max_score", "output", "visibility", "status"} <= set(t)
        assert t["visibility"] in VISIBILITIES and t["status"] in ("passed", "failed")
    if results["tests"]:
        assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    return results


def autograde(bundle, root: Path, files: dict[str, bytes], sandbox: str | None = None) -> dict:
    """Unpack ``bundle`` into ``root``, put ``files`` in submission/, run run_autograder; the results."""
    unpack(bundle, root)
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    return run_autograder(root, sandbox)


def sandboxes() -> list:
    return [pytest.param("bwrap", id="bwrap"), pytest.param("none", id="none")]


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
        setup, run = zf.read("setup.sh").decode(), zf.read("run_autograder").decode()
    torch = metadata.version("torch").split("+")[0]
    # everything pip installs goes into the autograder's own environment (PEP 668 images refuse the system's)
    assert 'python3 -m venv "$VENV"' in setup and 'VENV="$AUTOGRADER_ROOT/venv"' in setup
    assert [line for line in setup.splitlines() if "pip" in line and "install" in line and "${pip[@]}" not in line] == []
    assert f'install "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu --timeout 20 --retries 1' in setup
    assert f'|| "${{pip[@]}}" install "torch=={torch}"' in setup and '"${pip[@]}" install "$build"' in setup
    assert "apt-get install -y bubblewrap ||" in setup and 'chmod 700 "$SOURCE"' in setup
    assert 'exec "$python" -I -m grader.authoring.autograder' in run and "PYTHONPATH=" not in run


def test_a_correct_notebook_gets_full_marks(bundle, new_root):
    results = autograde(bundle, new_root(), {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) == 28
    assert all(t["status"] == "passed" for t in results["tests"])
    hidden = [t for t in results["tests"] if t["visibility"] != "visible"]
    assert hidden and {t["visibility"] for t in hidden} == {"after_due_date"}


def test_a_hidden_failure_shows_its_name_and_points_only(bundle, new_root):
    results = autograde(bundle, new_root(), {"mine.py": (SUBMISSIONS / "mha" / "bug_hardcoded_dk.py").read_bytes()})
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert results["score"] == 27 and len(failed) == 1 and failed[0]["visibility"] == "after_due_date"
    text = results["output"] + failed[0]["output"]
    assert "hidden" in text
    for detail in ("expected", "tensor(", "max abs", "differ"):
        assert detail not in failed[0]["output"].lower()


def test_an_unreadable_or_missing_submission_still_gets_results(bundle, new_root):
    garbled = autograde(bundle, new_root(), {"mha.ipynb": b"{not a notebook"})
    assert garbled["score"] == 0 and "not a valid notebook" in garbled["output"]
    nothing = autograde(bundle, new_root(), {"notes.txt": b"I could not finish"})
    assert nothing["score"] == 0 and nothing["tests"] == [] and "No notebook" in nothing["output"]


def test_the_autograders_own_failure_still_writes_results(bundle, tmp_path, new_root):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"{" if info.filename == "autograder.json" else src.read(info))
    results = autograde(broken, new_root(), {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
    assert results["score"] == 0 and "autograder itself failed" in results["output"]
    assert results["stdout_visibility"] == "hidden"


@pytest.mark.parametrize("sandbox", sandboxes())
def test_a_submission_that_links_to_the_reference_scores_0_and_says_why(bundle, new_root, sandbox):
    if sandbox == "bwrap":
        require_bwrap()
    root = new_root()
    unpack(bundle, root)
    (root / "submission" / "mha.ipynb").symlink_to("../source/course/reference/mha.ipynb")
    results = run_autograder(root, sandbox)
    assert results["score"] == 0 and results["tests"] == []
    assert "mha.ipynb is a symbolic link, not a file" in results["output"]
    assert "Submit the notebook or .py file itself" in results["output"]
    # a linked folder is not entered either: nothing to grade, and what to upload
    root = new_root()
    unpack(bundle, root)
    (root / "submission" / "work").symlink_to("../source/course/reference")
    results = run_autograder(root, sandbox)
    assert results["score"] == 0 and results["tests"] == [] and "No notebook" in results["output"]


@pytest.mark.parametrize("sandbox", sandboxes())
def test_code_that_reads_the_reference_from_disk_gets_nothing(bundle, new_root, sandbox):
    if sandbox == "bwrap":
        require_bwrap()
    root = new_root()
    unpack(bundle, root)
    hostile = READ_REFERENCE.read_text(encoding="utf-8").replace('"AUTOGRADER_ROOT", "/autograder"',
                                                                  f'"{root}", "/autograder"')
    (root / "submission" / "mha.py").write_text(hostile, encoding="utf-8")
    if sandbox == "none":
        # the attack works where the bundle is readable: graded from it as unzipped, by `grade` in none mode
        p = run_grade(str(root / "submission" / "mha.py"), "--root", str(root / "source" / "course"),
                      "--sandbox", "none", "--format", "json", timeout=300)
        assert p.returncode == 0 and json.loads(p.stdout)["score"] == 28, p.stdout[-2000:] + p.stderr[-2000:]
    results = run_autograder(root, sandbox)
    passed = [t["name"] for t in results["tests"] if t["status"] == "passed"]
    assert results["score"] == UNFINISHED_SCORE and all("written by hand" in name for name in passed), passed
    assert "NotImplementedError" in results["output"]
    if sandbox == "none":
        assert "NOT sandboxed" in results["output"] and "but not the course's files" in results["output"]
    else:
        assert "Isolation: bubblewrap sandbox" in results["output"]
    assert readable_by_others(root / "source") == []


def test_run_autograder_leaves_the_source_to_root_alone(bundle, new_root):
    root = new_root()
    unpack(bundle, root)
    assert readable_by_others(root / "source")  # unzipped as Gradescope unzips it: world-readable
    (root / "submission" / "mha.ipynb").write_bytes((SUBMISSIONS / "mha" / "filled.ipynb").read_bytes())
    metadata_file = root / "submission_metadata.json"  # Gradescope's: the submitters' names and e-mails
    metadata_file.write_text('{"users": [{"email": "student@example.edu"}]}')
    results = run_autograder(root)
    assert results["score"] == 28
    assert stat.S_IMODE(metadata_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "source").stat().st_mode) == 0o700
    assert readable_by_others(root / "source") == []
    assert os.access(root / "source" / "run_autograder", os.X_OK)  # root still runs it
    # the environment stays readable by all: a submission's code imports torch and the grader from it
    assert (root / "venv" / "pyvenv.cfg").stat().st_mode & 0o004


def test_without_its_environment_the_autograder_still_writes_results(bundle, new_root):
    root = new_root()
    unpack(bundle, root, venv=False)
    (root / "submission" / "mha.ipynb").write_bytes((SUBMISSIONS / "mha" / "filled.ipynb").read_bytes())
    results = run_autograder(root)
    assert results["score"] == 0 and results["tests"] == [] and "not set up" in results["output"]
    assert "not your code's fault" in results["output"]


def test_without_a_sandbox_or_a_uid_of_its_own_nothing_is_graded(bundle, new_root, monkeypatch, capsys):
    from grader.authoring import autograder
    from grader.execute import uids

    root = new_root()
    unpack(bundle, root, venv=False)
    (root / "submission" / "mha.ipynb").write_bytes((SUBMISSIONS / "mha" / "filled.ipynb").read_bytes())
    monkeypatch.setenv("AUTOGRADER_ROOT", str(root))
    monkeypatch.setenv("GRADER_SANDBOX", "none")
    monkeypatch.setattr(uids, "fresh_uid", lambda: None)  # as root in a user namespace that maps no other uid
    assert autograder.main() == 0
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and results["tests"] == [] and "autograder itself failed" in results["output"]
    assert "could read the course's reference (no unused uid is available here" in capsys.readouterr().out


def test_an_installed_grader_writes_its_project_from_its_metadata(monkeypatch, tmp_path):
    from grader.authoring import package

    tomllib = pytest.importorskip("tomllib")
    checkout = {name: data for name, data in package.grader_sources()}
    assert checkout["pyproject.toml"] == (ROOT / "pyproject.toml").read_bytes()
    monkeypatch.setattr(package, "_REPO", tmp_path)  # as in site-packages: no pyproject.toml above the package
    monkeypatch.setattr(package, "_PACKAGE", ROOT / "grader")
    installed = dict(package.grader_sources())
    assert set(installed) == set(checkout) and installed["grader/cli.py"] == checkout["grader/cli.py"]
    written = tomllib.loads(installed["pyproject.toml"].decode())
    assert written["build-system"]["build-backend"] == "setuptools.build_meta"
    assert written["tool"]["setuptools"]["packages"]["find"]["include"] == ["grader*"]
    project, dist = written["project"], metadata.distribution("grader")
    assert (project["name"], project["version"], project["description"], project["requires-python"]) == \
        (dist.metadata["Name"], dist.version, dist.metadata["Summary"], dist.metadata["Requires-Python"])
    assert project["readme"] == "README.md" and project["scripts"] == {"grade": "grader.cli:main"}
    extras = [f'{r}; extra == "{k}"' for k, rs in project["optional-dependencies"].items() for r in rs]
    assert project["dependencies"] + extras == dist.requires
    assert installed["README.md"].decode().startswith("# grader")


def test_hidden_cases_can_stay_hidden_and_mistakes_are_usage_errors(tmp_path, new_root):
    out = tmp_path / "hidden.zip"
    p = run_grade("package", "gradescope", "mha", "-o", str(out), "--hidden", "hidden", timeout=300)
    assert p.returncode == 0, p.stderr
    results = autograde(out, new_root(), {"mha.ipynb": (SUBMISSIONS / "mha" / "filled.ipynb").read_bytes()})
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
                 "grade mha.ipynb --root . --audience student --format junit -o grade-results.xml > grade-report.txt",
                 "GITHUB_STEP_SUMMARY", "if-no-files-found: error",
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
