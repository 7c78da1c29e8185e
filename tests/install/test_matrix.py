"""The install matrix: the wheel, installed non-editable into a fresh virtual environment under ``/tmp``
and into one outside it, grades there as it grades from the checkout (issue 18, part 5).

In each location (one environment per location, shared by the tests of this module), run from a
folder outside the checkout with the checkout as the course (``--root``), in a user's clean
environment and with a reference cache of its own (a first run computes the reference's outputs):

- the sample (``tests/submissions/mha/filled.ipynb``) gets 28/28 in the bubblewrap sandbox;
- ``grade batch -j 2`` over 8 different submissions (correct ones and known mistakes) gives each
  the scores the corpus expects (``tests/submissions/expected.toml``, which the editable install
  is held to by ``tests/test_corpus.py``), and its slots stayed warm: as many zygotes started as
  slots, every submission forked from one, none cold, a per-submission median under a second
  (the runtimes from the batch's store);
- ``grade package gradescope`` from the installed grader writes a zip that holds the course and
  that grader, and the zip's ``run_autograder`` grades the sample with the grader from the zip
  (the environment's Python standing in for the one ``setup.sh`` installs);
- ``grade package github-classroom`` from the installed grader writes the files the checkout's
  grader writes (the workflow itself runs in ``test_github_classroom.py``).

Why two locations: a Python environment under ``/tmp`` meets the sandbox's private ``/tmp`` (the
environment must be mounted over it, and the zygote's clean-up of ``/tmp`` must never walk into
it); one elsewhere is the common layout (``/opt/venv`` in container images; under ``$HOME``
where ``/opt`` is not writable).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.course.assignments import get_assignment
from grader.course.resolve import resolve_course
from install.venvs import ROOT, clean_env, make_venv, run

pytestmark = pytest.mark.install

SUBMISSIONS = ROOT / "tests" / "submissions" / "mha"
#: The class graded by ``grade batch``: four correct submissions and four known mistakes.
CLASS = ("filled.ipynb", "correct_einsum.py", "correct_inf_mask.py", "correct_sdpa_reuse.py",
         "bug_sqrt_dfeat.py", "bug_inverted_mask.py", "bug_softmax_dim.py", "bug_missing_lin_O.py")
SLOTS = 2
#: ``workers_lines`` (grader/batch/class_page.py) when every slot stayed warm: no cold worker, no zygote replaced.
ALL_WARM = re.compile(r"workers: (\d+) warm slots?, (\d+) zygotes? started \(torch imported once in each\), "
                      r"(\d+) workers forked from them(?: for (\d+) submissions)?")
LOCATIONS = ("under /tmp", "outside /tmp")


def _bwrap_usable() -> bool:
    from grader.execute.sandbox import bwrap_usable
    return bwrap_usable()


needs_bwrap = pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap cannot sandbox here (the matrix checks "
                                 "the sandboxed install; .ci/run installs bubblewrap)")


@dataclass(frozen=True)
class Installed:
    """The wheel installed at one location: the location's folder, the environment in it, and a
    folder outside the checkout to run commands from."""

    location: str
    base: Path
    venv: Path

    @property
    def grade(self) -> str:
        return str(self.venv / "bin" / "grade")

    @property
    def work(self) -> Path:
        return self.base / "work"

    def env(self) -> dict[str, str]:
        """A user's shell there: nothing of this session's grader settings, a reference cache of its own."""
        return clean_env(GRADER_CACHE=str(self.base / "cache"))

    def run_grade(self, *args: str, timeout: float = 600):
        return run([self.grade, *args], timeout=timeout, cwd=self.work, env=self.env())


def _outside_tmp() -> Path:
    """A new folder outside /tmp (and outside the checkout): under /opt, as container images keep
    their environments, else under $HOME."""
    for parent in (Path("/opt"), Path.home()):
        if os.access(parent, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="grader-install-matrix-", dir=parent))
    pytest.skip("neither /opt nor $HOME is writable here")


@pytest.fixture(scope="module", params=LOCATIONS)
def installed(request, wheel, tmp_path_factory) -> Installed:
    """The wheel, installed non-editable with torch (the local wheel: no second download) at the location."""
    base = tmp_path_factory.mktemp("matrix") if request.param == "under /tmp" else _outside_tmp()
    assert str(base).startswith("/tmp/") == (request.param == "under /tmp"), base
    try:
        start = time.perf_counter()
        python = make_venv(base / "venv", str(wheel))
        (base / "work").mkdir()
        print(f"[{request.param}] environment at {python.parent.parent}: {time.perf_counter() - start:.0f} s")
        # the grader it runs is the installed one, not this checkout
        p = run([str(python), "-c", "import grader; print(grader.__file__)"], env=clean_env(), cwd=base / "work")
        assert p.returncode == 0 and p.stdout.startswith(str(base / "venv")), p.stdout + p.stderr
        yield Installed(request.param, base, base / "venv")
    finally:  # an environment is a gigabyte: gone with its location (under /tmp, the rest stays for pytest's retention)
        shutil.rmtree(base if request.param != "under /tmp" else base / "venv", ignore_errors=True)


@needs_bwrap
def test_the_sample_gets_full_marks_in_the_sandbox(installed):
    p = installed.run_grade(str(SUBMISSIONS / "filled.ipynb"), "--root", str(ROOT), "--format", "json")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert (report["score"], report["max_score"]) == (28, 28)
    assert report["isolation"].startswith("bubblewrap sandbox"), report["isolation"]
    assert report["course"] == str(ROOT)


def test_the_installed_pytest_plugin_and_notebook_page(installed):
    """`python -m pytest --grade`: the wheel's pytest11 entry point, found by the environment's own pytest;
    `--format notebook` with nbconvert as the environment installed it."""
    p = run([str(installed.venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q",
             "--grade", str(SUBMISSIONS / "filled.ipynb"), "--grade-root", str(ROOT)],
            timeout=600, cwd=installed.work, env=installed.env())
    n_cases = len(tomllib.loads((ROOT / "assignments" / "mha" / "cases.toml").read_text())["cases"])
    assert p.returncode == 0 and f"{n_cases} passed" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    assert "score 28/28" in p.stdout
    # the notebook page: nbconvert's own templates as the environment installed them, under our template
    page = installed.work / "page.html"
    p = installed.run_grade(str(SUBMISSIONS / "course_template_2021.ipynb"), "--root", str(ROOT),
                            "--format", "notebook", "-o", str(page))
    assert p.returncode == 1 and page.is_file(), p.stdout[-3000:] + p.stderr[-3000:]
    text = page.read_text()
    assert 'id="cell-5"' in text and "shown under" in text and 'class="hll"' in text and "<script" not in text


@needs_bwrap
def test_a_class_grades_in_warm_slots_with_the_expected_scores(installed):
    source = installed.base / "class"
    source.mkdir()
    for name in CLASS:
        shutil.copy(SUBMISSIONS / name, source / name)
    out = installed.base / "batch"
    start = time.perf_counter()
    p = installed.run_grade("batch", str(source), "-a", "mha", "--out", str(out), "-j", str(SLOTS), "--root", str(ROOT))
    print(f"[{installed.location}] grade batch of {len(CLASS)}: {time.perf_counter() - start:.1f} s")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    # the scores, case by case, from the gradebook: what the corpus expects of each file
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert set(rows) == {Path(name).stem for name in CLASS}
    for name in CLASS:
        row, points = rows[Path(name).stem], expected_points(name)
        assert row["status"] == "graded", row
        assert {case: float(row[case]) for case in points} == points, name
        assert (float(row["score"]), float(row["max_score"])) == (sum(points.values()), 28), name

    # how long each submission took, from the store (the per-student runtimes)
    with sqlite3.connect(out / "grades.sqlite") as db:
        seconds = [s for (s,) in db.execute("SELECT seconds FROM results WHERE id IN "
                                            "(SELECT MAX(id) FROM results GROUP BY student_id)")]
    assert len(seconds) == len(CLASS)
    print(f"[{installed.location}] per submission: median {statistics.median(seconds):.2f} s, "
          f"max {max(seconds):.2f} s")
    assert statistics.median(seconds) < 1.0, sorted(seconds)

    # whether the slots stayed warm: only class.txt says so (its `workers:` line); every slot's zygote
    # started once, every submission was forked from one, none started cold, none replaced
    class_txt = (out / "class.txt").read_text(encoding="utf-8")
    workers = [line for line in class_txt.splitlines() if line.startswith("workers:")]
    assert len(workers) == 1, class_txt
    warm = ALL_WARM.fullmatch(workers[0])
    assert warm, class_txt[class_txt.find("This run:"):]
    # a submission's hidden cases run in a fresh worker of their own, after its public ones
    runs = 2 if any(c.hidden for c in get_assignment(resolve_course(ROOT), "mha").cases) else 1
    slots, zygotes, forks, graded = warm.groups()
    assert (int(slots), int(zygotes), int(forks)) == (SLOTS, SLOTS, runs * len(CLASS)), workers[0]
    assert int(graded or forks) == len(CLASS), workers[0]


@needs_bwrap
def test_the_sample_grades_when_the_environment_is_reached_through_a_link(installed):
    """The same environment, its python run by a path through a symbolic link (a ``current`` link to a
    release folder, a home or project folder that is a link; an environment created by such a path
    has it in its scripts' first line too)."""
    link = installed.base.with_name(installed.base.name + "-link")
    link.symlink_to(installed.base, target_is_directory=True)
    try:
        p = run([str(link / "venv" / "bin" / "python"), "-m", "grader", str(SUBMISSIONS / "filled.ipynb"),
                 "--root", str(ROOT), "--format", "json"], cwd=installed.work, env=installed.env())
    finally:
        link.unlink()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert report["score"] == 28 and report["isolation"].startswith("bubblewrap sandbox"), report["isolation"]


def test_the_gradescope_autograder_from_the_built_zip(installed):
    """``grade package gradescope`` from the installed grader, and the zip's ``run_autograder`` run as
    Gradescope runs it, with the location's folder as ``AUTOGRADER_ROOT`` (for ``/autograder``): its
    ``venv`` (the environment ``setup.sh`` would build from the zip's grader, which is this one file
    for file) grades ``submission/`` with the zip's course and precomputed outputs. setup.sh itself runs
    in tests/install/test_gradescope.py."""
    bundle = installed.work / "autograder.zip"
    p = installed.run_grade("package", "gradescope", "mha", "-o", str(bundle), "--root", str(ROOT))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
    assert {"setup.sh", "run_autograder", "autograder.json", "pyproject.toml", "README.md",
            "course/assignments/mha/cases.toml", "course/reference/mha.ipynb"} <= names
    assert any(n.startswith("cache/mha/") for n in names)
    zipped = {n for n in names if n.startswith("grader/")}
    assert zipped == set(installed_package(installed.venv)), zipped ^ set(installed_package(installed.venv))

    root = installed.base  # holds venv/ already, as /autograder does once setup.sh ran
    unpack(bundle, root / "source")
    (root / "submission").mkdir()
    shutil.copy(SUBMISSIONS / "filled.ipynb", root / "submission" / "mha.ipynb")
    p = run([str(root / "source" / "run_autograder")], cwd="/", env=clean_env(AUTOGRADER_ROOT=str(root)))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 28 and sum(t["max_score"] for t in results["tests"]) == 28, results.get("output")
    if _bwrap_usable():
        assert "bubblewrap sandbox" in results["output"], results["output"]


def test_the_github_classroom_repository_from_the_installed_grader(installed, tmp_path):
    mine, theirs = installed.work / "classroom", tmp_path / "classroom"
    p = installed.run_grade("package", "github-classroom", "mha", "-o", str(mine), "--root", str(ROOT))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    p = run([sys.executable, "-m", "grader", "package", "github-classroom", "mha", "-o", str(theirs), "--root", str(ROOT)],
            cwd=tmp_path, env=clean_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ours, checkouts = files_of(mine), files_of(theirs)
    # the course's files and the workflow as the checkout writes them; the grader the installed one, and installable
    assert {n: d for n, d in ours.items() if not n.startswith(".grader/")} == \
        {n: d for n, d in checkouts.items() if not n.startswith(".grader/")}
    assert {n for n in ours if n.startswith(".grader/grader/")} == \
        {f".grader/{name}" for name in installed_package(installed.venv)}
    assert ".grader/pyproject.toml" in ours


# --------------------------------------------------------------------------------- helpers


def expected_points(name: str) -> dict[str, float]:
    """Each case's points for the corpus file ``tests/submissions/mha/NAME``: its points, or 0 where
    ``expected.toml`` says it fails or ends in an error."""
    cases = tomllib.loads((ROOT / "assignments" / "mha" / "cases.toml").read_text(encoding="utf-8"))["cases"]
    expected = tomllib.loads((ROOT / "tests" / "submissions" / "expected.toml").read_text(encoding="utf-8"))
    entry = expected[f"tests/submissions/mha/{name}"]
    assert "all" not in entry, entry
    lost = set(entry.get("failed", ())) | set(entry.get("errors", ()))
    return {c["id"]: 0.0 if c["id"] in lost else float(c["points"]) for c in cases}


def installed_package(venv: Path) -> list[str]:
    """The grader package's files as installed in ``venv`` (no caches), relative to site-packages."""
    (site,) = venv.glob("lib/python*/site-packages")
    return sorted(str(p.relative_to(site)) for p in (site / "grader").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def unpack(bundle: Path, dest: Path) -> None:
    """Unzip as Gradescope does (modes kept)."""
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dest)
        for info in zf.infolist():
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(dest / info.filename, mode)
