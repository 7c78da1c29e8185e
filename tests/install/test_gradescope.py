"""The Gradescope autograder as Gradescope builds and runs it, from a grader installed from its wheel.

A wheel-installed grader (a fresh virtual environment: no checkout above its package) writes the
zip (``grade package gradescope mha --root <this checkout>``). The zip is unpacked into a
temporary folder that stands for ``/autograder`` (``AUTOGRADER_ROOT``; under /tmp, mode 0755 as
Gradescope's), and ``source/setup.sh`` runs for real, as root, with a root shell's ``PATH``: its
``python3`` is this machine's Debian 12 Python, which is externally managed (PEP 668) and refuses
a system-wide ``pip install``. Then ``source/run_autograder`` grades, with bubblewrap and without
(``GRADER_SANDBOX=none``, as in a container where bubblewrap cannot run): a correct notebook, a
submission that is a link to the reference, and code that reads the reference from disk.
The same wheel-installed grader writes the GitHub Classroom template too: its ``.grader/`` (project
files written from the installed metadata) builds a wheel with the metadata and files of the original.

Run as root only (Gradescope runs both scripts as root; setup.sh calls apt-get).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from conftest import readable_by_others
from install.venvs import ROOT, clean_env, make_venv, run

pytestmark = pytest.mark.install

#: A root shell's PATH (no pyenv, no virtual environment): `python3` is the system's.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FILLED = ROOT / "tests" / "submissions" / "mha" / "filled.ipynb"
READ_REFERENCE = ROOT / "tests" / "autograder" / "read_reference.py"
#: What read_reference.py scores where it cannot read the reference (as in tests/test_package.py).
UNFINISHED_SCORE = 2
#: Another user, as a submission's code runs (the grader picks a fresh, unused uid for each worker).
OTHER = ["setpriv", "--reuid", "54321", "--regid", "54321", "--clear-groups"]


@pytest.fixture(scope="module")
def autograder(tmp_path_factory, wheel):
    """(the root standing for /autograder, setup.sh's completed process, its seconds, the wheel's venv) once
    setup.sh ran."""
    if os.geteuid() != 0:
        pytest.skip("setup.sh runs as root, as on Gradescope")
    if not shutil.which("apt-get") or not shutil.which("setpriv"):
        pytest.skip("setup.sh needs apt-get (Gradescope's images are Ubuntu); the checks need setpriv")
    tmp = tmp_path_factory.mktemp("gradescope")
    make_venv(tmp / "v", str(wheel))
    out = tmp / "autograder.zip"
    p = run([str(tmp / "v" / "bin" / "grade"), "package", "gradescope", "mha", "-o", str(out), "--root", str(ROOT)],
            cwd=tmp, env=clean_env(GRADER_CACHE=str(tmp / "cache")), timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    root = Path(tempfile.mkdtemp(prefix="grader-autograder-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        (root / "source").mkdir()
        (root / "submission").mkdir()
        with zipfile.ZipFile(out) as zf:
            zf.extractall(root / "source")
            for info in zf.infolist():  # extractall drops the modes; Gradescope's unzip keeps them
                os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777 or 0o644)
        started = time.monotonic()
        setup = run(["bash", str(root / "source" / "setup.sh")], cwd="/", timeout=1200,
                    env=clean_env(AUTOGRADER_ROOT=str(root), PATH=SYSTEM_PATH))
        yield root, setup, time.monotonic() - started, tmp / "v"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_autograder(root: Path, files: dict[str, bytes | str], sandbox: str | None) -> dict:
    """``submission/`` holding ``files`` (a str is a link to it), ``source/run_autograder`` run as Gradescope runs
    it; the results, checked against Gradescope's format."""
    shutil.rmtree(root / "submission")
    shutil.rmtree(root / "results", ignore_errors=True)
    (root / "submission").mkdir()
    for name, data in files.items():
        if isinstance(data, str):
            (root / "submission" / name).symlink_to(data)
        else:
            (root / "submission" / name).write_bytes(data)
    env = clean_env(AUTOGRADER_ROOT=str(root), PATH=SYSTEM_PATH)
    env.pop("GRADER_SANDBOX", None)
    if sandbox:
        env["GRADER_SANDBOX"] = sandbox
    p = run([str(root / "source" / "run_autograder")], cwd="/", env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert isinstance(results["score"], (int, float)) and isinstance(results["tests"], list)
    for t in results["tests"]:
        assert {"name", "score", "max_score", "output", "visibility", "status"} <= set(t)
        assert t["status"] in ("passed", "failed")
    if results["tests"]:
        assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    return results


def test_setup_sh_completes_on_this_machines_externally_managed_python(autograder):
    root, setup, seconds, _ = autograder
    # what the old setup.sh did first fails here: this python3 is externally managed (PEP 668)
    system = run(["python3", "-m", "pip", "install", "--dry-run", "--no-index", "--upgrade", "pip"],
                 env=clean_env(PATH=SYSTEM_PATH))
    assert system.returncode != 0 and "externally-managed-environment" in system.stdout + system.stderr
    assert setup.returncode == 0, setup.stdout[-4000:] + setup.stderr[-4000:]
    assert "autograder ready: Python" in setup.stdout
    print(f"\nsetup.sh took {seconds:.0f} s")
    assert seconds < 900
    # the grader is the environment's own, installed (not editable), with torch
    python = root / "venv" / "bin" / "python"
    where = run([str(python), "-I", "-c", "import grader, torch; print(grader.__file__); print(torch.__version__)"],
                cwd="/", env=clean_env(PATH=SYSTEM_PATH))
    assert where.returncode == 0, where.stderr
    grader_file, torch_version = where.stdout.split()
    assert grader_file.startswith(str(root / "venv" / "lib")) and "site-packages" in grader_file
    assert torch_version.split("+")[0] == metadata.version("torch").split("+")[0]
    assert not (root / "source" / "build").exists()  # built from a copy: source/ is as unzipped


def test_the_course_is_roots_alone_and_the_environment_everyones(autograder):
    root, setup, _, _ = autograder
    assert setup.returncode == 0
    assert stat.S_IMODE((root / "source").stat().st_mode) == 0o700
    assert readable_by_others(root / "source") == []
    for path in ("source/course/reference/mha.ipynb", "source/cache", "source/autograder.json"):
        other = run([*OTHER, "cat", str(root / path)])
        assert other.returncode != 0 and "Permission denied" in other.stderr, path
    # a submission's code, as another user, still imports torch and the grader from the environment
    other = run([*OTHER, str(root / "venv" / "bin" / "python"), "-I", "-c", "import torch, grader.execute.worker"],
                cwd="/", env=clean_env(PATH=SYSTEM_PATH))
    assert other.returncode == 0, other.stderr[-2000:]


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_gradescope_grades_honest_work_and_nothing_else(autograder, sandbox):
    root, setup, _, _ = autograder
    assert setup.returncode == 0
    if sandbox == "bwrap":
        probe = run(["bwrap", "--ro-bind", "/", "/", "true"]) if shutil.which("bwrap") else None
        if probe is None or probe.returncode != 0:
            pytest.skip("bubblewrap cannot run here" + (f": {probe.stderr.strip()}" if probe else ""))
    isolation = "bubblewrap sandbox" if sandbox == "bwrap" else "but not the course's files or the cache"

    filled = run_autograder(root, {"mha.ipynb": FILLED.read_bytes()}, sandbox)
    assert filled["score"] == 28 and all(t["status"] == "passed" for t in filled["tests"])
    assert isolation in filled["output"]

    linked = run_autograder(root, {"mha.ipynb": "../source/course/reference/mha.ipynb"}, sandbox)
    assert linked["score"] == 0 and linked["tests"] == []
    assert "mha.ipynb is a symbolic link, not a file" in linked["output"]

    hostile = READ_REFERENCE.read_text(encoding="utf-8").replace('"AUTOGRADER_ROOT", "/autograder"',
                                                                 f'"{root}", "/autograder"')
    reader = run_autograder(root, {"mha.py": hostile.encode()}, sandbox)
    passed = [t["name"] for t in reader["tests"] if t["status"] == "passed"]
    assert reader["score"] == UNFINISHED_SCORE and all("written by hand" in n for n in passed), passed
    assert isolation in reader["output"]
    assert readable_by_others(root / "source") == []


def test_a_wheel_installed_grader_writes_a_github_classroom_grader_that_builds(autograder, wheel, tmp_path):
    venv = autograder[3]
    repo = tmp_path / "repo"
    p = run([str(venv / "bin" / "grade"), "package", "github-classroom", "mha", "-o", str(repo), "--root", str(ROOT)],
            cwd=tmp_path, env=clean_env(GRADER_CACHE=str(tmp_path / "cache")))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (repo / ".grader" / "pyproject.toml").read_text().startswith("# Written by `grade package` from the metadata")
    built = run([str(venv / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
                 str(repo / ".grader")], env=clean_env())
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (rebuilt,) = (tmp_path / "w").glob("grader-*.whl")
    with zipfile.ZipFile(rebuilt) as ours, zipfile.ZipFile(wheel) as theirs:
        assert _metadata(ours) == _metadata(theirs)
        assert sorted(n for n in ours.namelist() if n.startswith("grader/")) == \
            sorted(n for n in theirs.namelist() if n.startswith("grader/"))


def _metadata(wheel: zipfile.ZipFile) -> list[str]:
    """A wheel's requirements, extras, scripts and Python requirement (what the project files decide)."""
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    keep = ("Name:", "Version:", "Requires-Python:", "Requires-Dist:", "Provides-Extra:", "Summary:")
    lines = [line for line in wheel.read(name).decode().splitlines() if line.startswith(keep)]
    entry = next((n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")), None)
    return lines + (wheel.read(entry).decode().split() if entry else [])
