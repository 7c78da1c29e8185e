"""GitHub Classroom: the generated workflow's own steps, run as a GitHub-hosted runner runs them (issue 18, part 4).

The template repository is written by ``grade package github-classroom`` (this checkout's grader:
``tests/install/test_matrix.py`` holds the installed grader to writing the same files). Its
``.github/workflows/grade.yml`` is parsed and its steps run in order, in a copy of the repository
(the checkout), the way the runner runs them:

- a ``run:`` step is written to a script under ``RUNNER_TEMP`` and run by the step's shell: with
  none given, ``bash -e {0}``; with ``shell: bash``, ``bash --noprofile --norc -eo pipefail {0}``
  (GitHub's table of shells), in ``GITHUB_WORKSPACE``, with the runner's variables (``CI``,
  ``GITHUB_STEP_SUMMARY``, ``RUNNER_TEMP``, ...), a fresh ``HOME``, and nothing of this session's;
- ``actions/checkout``: the copy is the checkout; ``actions/setup-python``: a fresh virtual
  environment of this Python (its version must be the one asked for), first on PATH, with torch
  already in it from the local wheel, since download.pytorch.org cannot be reached here (the
  workflow's pinned torch line must then find it satisfied without going to the index);
  ``actions/upload-artifact``: the file it uploads must be there;
- after a failed step only ``if: always()`` steps run; the job fails when a step failed;
- ``sudo`` runs its arguments; ``apt-get`` is a stand-in that installs bubblewrap where the
  situation has it and fails as apt fails (``E: Unable to locate package``) where it does not.

Three situations, each on a fresh runner (its first job: the correct notebook; the second, with a
known mistake (scores divided by √d_feat), runs every step again on the same runner):

- **bubblewrap works**: the real ``bwrap`` on PATH;
- **bubblewrap missing**: PATH reaches no ``bwrap`` (a folder of links to every program of the
  system folders but ``bwrap`` stands for them);
- **bubblewrap cannot create namespaces**: a ``bwrap`` first on PATH that fails as it fails on
  GitHub's Ubuntu 24.04 runners, where AppArmor restricts unprivileged user namespaces
  (``bwrap: setting up uid map: Permission denied``, exit 1).

Each gives the verdict (the grade step exits 0 for the correct notebook, 1 for the mistake, never
3), the job summary holds the report, the JUnit file parses, and the report says how the code ran:
in the sandbox, or unsandboxed and why. Each run's time is printed (``-rA`` shows it).

Run as whoever runs the tests (root in .ci/run). A GitHub runner runs the steps as the user
``runner``; this machine's Python lives under /root, which no other user may enter, so that is not
reproduced here (the fake ``bwrap`` stands for what an unprivileged bwrap meets on such a runner).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from install.venvs import ROOT, clean_env, make_venv, run

pytestmark = pytest.mark.install
yaml = pytest.importorskip("yaml", reason="PyYAML reads the workflow (the test extra: pip install -e '.[test]')")

SUBMISSIONS = ROOT / "tests" / "submissions" / "mha"
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
#: What bubblewrap writes where AppArmor denies unprivileged user namespaces (Ubuntu 23.10 and later,
#: GitHub's ubuntu-24.04 images), and how it exits.
USERNS_DENIED, USERNS_DENIED_STATUS = "bwrap: setting up uid map: Permission denied", 1
#: GitHub's shells (jobs.<job_id>.steps[*].shell): none given, and ``bash``.
SHELLS = {None: ["bash", "-e", "{0}"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
          "sh": ["sh", "-e", "{0}"]}
WORKS, MISSING, NO_NAMESPACES = "bubblewrap works", "bubblewrap missing", "bubblewrap cannot create namespaces"
#: What the report's isolation line says in each situation (``grader.execute.sandbox.describe``).
ISOLATION = {
    WORKS: "isolation: bubblewrap sandbox",
    MISSING: "NOT sandboxed (bubblewrap is not installed)",
    NO_NAMESPACES: f"NOT sandboxed (bubblewrap is installed but cannot create its namespaces here ({USERNS_DENIED}))",
}


def _bwrap_usable() -> bool:
    from grader.execute.sandbox import bwrap_usable
    return bwrap_usable()


# ----------------------------------------------------------------------------- the runner


@dataclass
class Runner:
    """A stand-in for a fresh GitHub-hosted runner in one situation: its Python (actions/setup-python's),
    its PATH, its home and temporary folder."""

    situation: str
    base: Path
    python_home: Path
    path: str

    def env(self, workspace: Path, summary: Path) -> dict[str, str]:
        temp = self.base / "runner-temp"
        files = {name: temp / "_runner_file_commands" / name for name in ("env", "path", "output", "state")}
        for f in files.values():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
        # this machine's way to its package registries (a runner reaches PyPI directly)
        env = {k: v for k, v in clean_env().items() if k.startswith("PIP_") or k in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        env.update({
            "PATH": self.path, "HOME": str(self.base / "home"), "LANG": "C.UTF-8", "CI": "true",
            "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace), "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_ENV": str(files["env"]), "GITHUB_PATH": str(files["path"]), "GITHUB_OUTPUT": str(files["output"]),
            "GITHUB_STATE": str(files["state"]), "GITHUB_EVENT_NAME": "push", "GITHUB_JOB": "grade",
            "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_TEMP": str(temp),
            "RUNNER_TOOL_CACHE": str(self.python_home.parent), "pythonLocation": str(self.python_home),
        })
        return env


def _fake(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text, encoding="utf-8")
    path.chmod(0o755)


def _without_bwrap(folder: Path) -> str:
    """A folder of links to every program of the system folders but bwrap (Debian's /bin is /usr/bin)."""
    folder.mkdir()
    for d in SYSTEM_PATH:
        if not os.path.isdir(d):
            continue
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.name != "bwrap" and not (folder / entry.name).exists() and not (folder / entry.name).is_symlink():
                (folder / entry.name).symlink_to(entry.path)
    return str(folder)


@pytest.fixture(scope="module", params=(WORKS, MISSING, NO_NAMESPACES))
def runner(request, tmp_path_factory) -> Runner:
    """A fresh runner in the situation: actions/setup-python's Python as a new virtual environment (torch
    in it), ``sudo`` and ``apt-get`` stand-ins, and bubblewrap as the situation has it."""
    situation = request.param
    if situation == WORKS and not _bwrap_usable():
        pytest.skip("bubblewrap cannot sandbox on this machine (.ci/run installs it)")
    base = tmp_path_factory.mktemp("runner")
    (base / "home").mkdir()
    start = time.perf_counter()
    python = make_venv(base / "toolcache" / "Python" / "3.11" / "x64")
    print(f"[{situation}] setup-python stand-in (a virtual environment with torch): {time.perf_counter() - start:.0f} s")
    fakes = base / "fakes"
    fakes.mkdir()
    _fake(fakes / "sudo", 'exec "$@"\n')
    has_bwrap = situation != MISSING
    _fake(fakes / "apt-get", f"""echo "apt-get $*" >> "{base / 'apt-get.log'}"
case "$1" in
  update) echo "Reading package lists... Done"; exit 0 ;;
  install) {'echo "bubblewrap is already the newest version."; exit 0' if has_bwrap else
            'echo "E: Unable to locate package bubblewrap" >&2; exit 100'} ;;
esac
exit 0
""")
    if situation == NO_NAMESPACES:
        _fake(fakes / "bwrap", f'echo "{USERNS_DENIED}" >&2\nexit {USERNS_DENIED_STATUS}\n')
    system = _without_bwrap(base / "system-bin") if situation == MISSING else os.pathsep.join(SYSTEM_PATH)
    path = os.pathsep.join([str(python.parent), str(fakes), system])
    found = shutil.which("bwrap", path=path)
    assert found == {WORKS: shutil.which("bwrap", path=os.pathsep.join(SYSTEM_PATH)), MISSING: None,
                     NO_NAMESPACES: str(fakes / "bwrap")}[situation], found
    yield Runner(situation, base, python.parent.parent, path)
    shutil.rmtree(python.parent.parent, ignore_errors=True)  # a gigabyte; the rest stays for pytest's retention


# ------------------------------------------------------------------------------ the job


@dataclass
class StepRun:
    name: str
    seconds: float = 0.0
    status: int | None = None  # None: skipped (an earlier step failed)
    output: str = ""


@dataclass
class Job:
    steps: list[StepRun] = field(default_factory=list)
    summary: str = ""

    @property
    def failed(self) -> bool:
        return any(s.status not in (None, 0) for s in self.steps)

    def step(self, prefix: str) -> StepRun:
        (found,) = [s for s in self.steps if s.name.startswith(prefix)]
        return found


def run_job(workflow: dict, workspace: Path, runner: Runner) -> Job:
    """Run the ``grade`` job's steps in order, as the runner does (see the module docstring)."""
    job_spec = workflow["jobs"]["grade"]
    default_shell = ((job_spec.get("defaults") or workflow.get("defaults") or {}).get("run") or {}).get("shell")
    job = Job()
    temp = runner.base / "runner-temp"
    temp.mkdir(exist_ok=True)
    for i, step in enumerate(job_spec["steps"]):
        name = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
        condition = str(step.get("if", "success()"))
        if job.failed and "always()" not in condition and "failure()" not in condition:
            job.steps.append(StepRun(name))
            continue
        start = time.perf_counter()
        if "uses" in step:
            job.steps.append(StepRun(name, 0.0, *_action(step, workspace, runner)))
            continue
        script = temp / f"step-{i}.sh"
        script.write_text(step["run"], encoding="utf-8")
        summary = temp / "_runner_file_commands" / f"step_summary_{i}"
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.touch()
        shell = [str(script) if a == "{0}" else a for a in SHELLS[step.get("shell", default_shell)]]
        p = subprocess.run(shell, cwd=workspace, env=runner.env(workspace, summary), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=step.get("timeout-minutes", 20) * 60)
        job.steps.append(StepRun(name, time.perf_counter() - start, p.returncode, p.stdout))
        job.summary += summary.read_text(encoding="utf-8")
    return job


def _action(step: dict, workspace: Path, runner: Runner) -> tuple[int, str]:
    """What the runner's actions would do here: (status, output)."""
    action, options = step["uses"].split("@")[0], step.get("with") or {}
    if action == "actions/checkout":
        return 0, f"the repository is {workspace}"
    if action == "actions/setup-python":
        version = "{0.major}.{0.minor}".format(sys.version_info)
        assert str(options.get("python-version")) == version, f"the stand-in is Python {version}, not {options}"
        return 0, f"Python {version} at {runner.python_home}"
    if action == "actions/upload-artifact":  # a missing file fails the step only with if-no-files-found: error
        missing = [p for p in str(options["path"]).split() if not (workspace / p).is_file()]
        if not missing:
            return 0, f"uploaded {options['path']}"
        return (1 if options.get("if-no-files-found") == "error" else 0), f"Warning: No files were found at {missing}"
    raise AssertionError(f"no stand-in for the action {step['uses']}")


# ------------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The template repository, as ``grade package github-classroom mha`` writes it."""
    out = tmp_path_factory.mktemp("classroom") / "mha-template"
    p = run([sys.executable, "-m", "grader", "package", "github-classroom", "mha", "-o", str(out), "--root", str(ROOT)],
            cwd=out.parent, env=clean_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out


def _notebook(kind: str, path: Path) -> None:
    """The student's notebook: the filled one, or the same notebook with the √d_feat mistake."""
    nb = nbformat.read(SUBMISSIONS / "filled.ipynb", as_version=4)
    if kind == "mistake":
        nb.cells = [nbformat.v4.new_code_cell((SUBMISSIONS / "bug_sqrt_dfeat.py").read_text(encoding="utf-8"))]
    nbformat.write(nb, path)


def _flat(text: str) -> str:
    """Text with its line wrapping undone (the rich report wraps at 80 columns)."""
    return " ".join(text.split())


@pytest.mark.parametrize("notebook", ("correct", "mistake"))
def test_the_workflow_gives_the_verdict_and_says_how_the_code_ran(runner, template, notebook, tmp_path):
    workspace = tmp_path / "mha-template"
    shutil.copytree(template, workspace, symlinks=True)
    _notebook(notebook, workspace / "mha.ipynb")
    workflow = yaml.safe_load((workspace / ".github" / "workflows" / "grade.yml").read_text(encoding="utf-8"))
    job = run_job(workflow, workspace, runner)
    print(f"[{runner.situation} / {notebook}] " + "; ".join(
        f"{s.name}: {'skipped' if s.status is None else f'{s.seconds:.1f} s, exit {s.status}'}" for s in job.steps))
    log = "\n".join(f"--- {s.name} (exit {s.status})\n{s.output[-4000:]}" for s in job.steps)

    install, grade, upload = job.step("Install"), job.step("Grade"), job.step("actions/upload-artifact")
    assert install.status == 0, log
    # the pinned torch line found the environment's torch: nothing downloaded, the index not asked
    assert "Requirement already satisfied: torch==" in install.output, log
    assert "Retrying" not in install.output and "NewConnectionError" not in install.output, log
    if runner.situation == MISSING:
        assert "E: Unable to locate package bubblewrap" in install.output
        assert "no bubblewrap: graded unsandboxed" in install.output, log
    else:
        assert "no bubblewrap" not in install.output, log
    assert "apt-get install -y bubblewrap" in (runner.base / "apt-get.log").read_text(encoding="utf-8")

    # the verdict: the job fails while a public case fails; never the grader's own failure (3)
    assert grade.status == (0 if notebook == "correct" else 1), log
    assert job.failed == (notebook == "mistake"), log
    assert upload.status == 0 and upload.output.startswith("uploaded"), log  # if: always(): uploaded either way

    report = (workspace / "grade-report.txt").read_text(encoding="utf-8")
    assert job.summary.startswith("## Multi-headed attention") and _flat(report) in _flat(job.summary), job.summary
    score = "score 23/23 (+5 hidden)" if notebook == "correct" else "score 13/23 (+5 hidden)"
    assert report.startswith(f"Grading mha.ipynb · mha · {score}"), report
    if notebook == "mistake":
        assert "dividing by √d_feat instead of √d_head" in _flat(report), report
    assert ISOLATION[runner.situation] in _flat(report), report

    junit = ET.parse(workspace / "grade-results.xml").getroot()
    cases = list(junit.iter("testcase"))
    assert len(cases) == 18 and sum(c.find("skipped") is not None for c in cases) == 3, ET.tostring(junit)[:2000]
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert len(failed) == (0 if notebook == "correct" else 6), failed
    isolation = {p.get("name"): p.get("value") for p in junit.iter("property")}["isolation"]
    assert _flat(isolation) in _flat(report)

    if notebook == "correct":
        # the pinned torch line alone, once more: how long it takes when torch is there
        (line,) = [l.strip() for l in install_script(workflow).splitlines() if '"torch==' in l]
        start = time.perf_counter()
        p = subprocess.run(["bash", "-e", "-c", line], cwd=workspace, capture_output=True, text=True, timeout=300,
                           env=runner.env(workspace, tmp_path / "summary"))
        print(f"[{runner.situation}] {line}: {time.perf_counter() - start:.1f} s, exit {p.returncode}")
        assert p.returncode == 0 and "Requirement already satisfied: torch==" in p.stdout, p.stdout + p.stderr


def install_script(workflow: dict) -> str:
    (step,) = [s for s in workflow["jobs"]["grade"]["steps"] if str(s.get("name", "")).startswith("Install")]
    return step["run"]
