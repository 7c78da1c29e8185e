"""``grade package gradescope|github-classroom NAME -o PATH``: the course's grader where courses grade.

**GitHub Classroom** (``github_classroom``): a template repository's files. The student bundle
of ``grade release`` (the template notebook, the released case file, the public fixtures:
nothing of the reference), the grader's source in ``.grader/``, and a workflow
(``.github/workflows/grade.yml``) that installs them and grades the notebook on every push:
a job summary with the report, JUnit XML as an artifact, the job failing while a public case
fails. Hidden cases cannot stay hidden in a repository the student owns, so only the public
cases are there: the hidden ones are graded elsewhere (``grade batch`` over the repositories).

**Gradescope** (``gradescope``):

The zip holds, at its top (Gradescope unpacks it into ``/autograder/source``):

- ``setup.sh``: run once, as root, when Gradescope builds the image: Python with its ``venv``
  module and bubblewrap from apt (bubblewrap best effort: Gradescope's containers may not allow
  its namespaces, and the grader then says so in every report); then a virtual environment of
  the autograder's own, ``/autograder/venv`` (the image's ``python3`` may be externally managed,
  PEP 668), holding the CPU wheel of the torch version the reference outputs were computed with
  and the grader itself, built from ``grader/`` and ``pyproject.toml`` (not editable); last,
  ``source/`` is made root's alone (nothing in it readable by any other user) and the
  environment readable by all (student code runs as a uid of its own and imports from it);
- ``run_autograder``: run for every submission, as root: the environment's
  ``python -I -m grader.authoring.autograder`` grades ``/autograder/submission/`` and always
  writes ``/autograder/results/results.json`` (``grader.authoring.autograder``); without the
  environment, a results.json that says the autograder is not set up;
- ``autograder.json``: the assignment, the file name students upload, how hidden cases show;
- ``course/``: the assignment's folder (cases, known mistakes, checks) and its reference;
- ``cache/``: the reference's outputs and the mistake variants, computed now, so that no
  submission pays for them (recomputed there if Gradescope's torch differs).

Students never see the zip: it holds the reference. What they see is ``results.json``,
written for the student audience (hidden cases by name, points and result only).

Both packages carry the installable grader (``grader_sources``): run from a checkout, its own
``pyproject.toml``, ``README.md`` and ``grader/``; run from an installed grader (a wheel in
site-packages, where no ``pyproject.toml`` lies), a ``pyproject.toml`` and ``README.md`` written
from the installed distribution's metadata (``installed_pyproject``), and the installed package's files.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from grader.authoring.autograder import HIDDEN_AS, SETTINGS
from grader.config import GradeConfig
from grader.course.bundle import write_bundle
from grader.errors import UsageError
from grader.spec.cases import Assignment

#: The ``grader`` package that runs, and the folder above it: a checkout, or site-packages.
_PACKAGE = Path(__file__).resolve().parents[1]
_REPO = _PACKAGE.parent
DISTRIBUTION = "grader"
#: Where setup.sh looks for torch first (CPU wheels: no CUDA, a fraction of the size); PyPI after it.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (written by
# `grade package gradescope`). Nothing is installed system-wide but apt packages: torch and the
# grader go into a virtual environment of the autograder's own, $AUTOGRADER_ROOT/venv, because the
# image's python3 may be externally managed (PEP 668: Debian 12, Ubuntu 24.04).
set -euo pipefail
umask 022
export DEBIAN_FRONTEND=noninteractive
AUTOGRADER_ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$AUTOGRADER_ROOT/source"
VENV="$AUTOGRADER_ROOT/venv"

apt-get update || echo "apt-get update failed: installing from the package lists the image has"
apt-get install -y python3 python3-venv
apt-get install -y bubblewrap || echo "bubblewrap could not be installed: submissions run unsandboxed (reports say so)"

rm -rf "$VENV"
python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip)
"${pip[@]}" install --upgrade pip || echo "pip could not be upgraded: going on with the one python3 -m venv gave"
# torch's CPU wheel from PyTorch's index, tried once and briefly; PyPI's build when that index is out of reach.
"${pip[@]}" install "torch=={torch}" --index-url {torch_index} --timeout 20 --retries 1 \\
  || "${pip[@]}" install "torch=={torch}"
# The grader, built from a copy of its files (not editable: grading imports nothing from source/).
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -R "$SOURCE/pyproject.toml" "$SOURCE/README.md" "$SOURCE/grader" "$build/"
"${pip[@]}" install "$build"

# Who may read what. The environment: everyone (a submission's code runs as a uid of its own and
# imports torch and the grader from it). source/ (the course, its reference, the cached outputs):
# root alone; run_autograder makes sure of it again for every submission.
chmod -R a+rX "$VENV"
chmod go+x,go-w "$AUTOGRADER_ROOT"
chmod -R go-rwx "$SOURCE"
chmod 700 "$SOURCE"
cd /
echo "autograder ready: $("$VENV/bin/python" -I -c 'import sys, torch, grader.authoring.autograder
print("Python", sys.version.split()[0], "torch", torch.__version__)')"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission, as root; it always writes results/results.json.
export AUTOGRADER_ROOT="${AUTOGRADER_ROOT:-/autograder}"
python="$AUTOGRADER_ROOT/venv/bin/python"
cd "$AUTOGRADER_ROOT"
if [ ! -x "$python" ]; then
  echo "$python is missing: setup.sh did not finish when the image was built (see its log) and the autograder must be rebuilt"
  mkdir -p results
  cat > results/results.json <<'END'
{"score": 0.0, "tests": [], "stdout_visibility": "hidden",
 "output": "The autograder is not set up (not your code's fault). Your instructor can see why; submit again later or ask them."}
END
  exit 0
fi
# -I: the environment's own grader only (nothing imported from this folder or from $PYTHONPATH).
exec "$python" -I -m grader.authoring.autograder
"""


def gradescope(assignment: Assignment, out: Path, config: GradeConfig, hidden_as: str = "after_due_date") -> list[str]:
    """Write the autograder zip for ``assignment`` to ``out``; the names it holds."""
    if hidden_as not in HIDDEN_AS:
        raise UsageError(f"--hidden must be one of {', '.join(HIDDEN_AS)}, not {hidden_as!r}")
    if out.suffix != ".zip":
        raise UsageError(f"the autograder is a zip file: give -o a name ending in .zip, not {out.name}")
    torch = metadata.version("torch").split("+")[0]
    sources = grader_sources()
    with tempfile.TemporaryDirectory(prefix="grader-package-") as tmp_name:
        tmp = Path(tmp_name)
        write_bundle(assignment, tmp, config)  # course/ and cache/, checked to reproduce the fingerprint
        settings = {"assignment": assignment.name, "file": f"{assignment.name}.ipynb", "hidden_as": hidden_as}
        files = {
            "setup.sh": (SETUP.replace("{torch}", torch).replace("{torch_index}", TORCH_CPU_INDEX), 0o755),
            "run_autograder": (RUN, 0o755),
            SETTINGS: (json.dumps(settings, indent=2) + "\n", 0o644),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        names: list[str] = []
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, (text, mode) in files.items():
                _add(zf, name, text.encode(), mode)
                names.append(name)
            for name, data in sources:
                names.append(_add(zf, name, data, 0o644))
            for path in sorted(p for p in tmp.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                names.append(_add(zf, str(path.relative_to(tmp)), path.read_bytes(), 0o644))
        partial.replace(out)
    return names


def grader_sources() -> list[tuple[str, bytes]]:
    """The installable grader, as (name relative to its root, contents): ``pyproject.toml``, the
    ``README.md`` it names, and the package's files (no caches). Run from a checkout, these are the
    checkout's files; run from an installed grader, the project files are written from its metadata."""
    package = [(f"grader/{p.relative_to(_PACKAGE).as_posix()}", p.read_bytes()) for p in sorted(_PACKAGE.rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return _project_files() + package


def _project_files() -> list[tuple[str, bytes]]:
    """``pyproject.toml`` and ``README.md``: the checkout's, else written from the installed distribution."""
    pyproject, readme = _REPO / "pyproject.toml", _REPO / "README.md"
    if pyproject.is_file() and readme.is_file() and _names_this_project(pyproject.read_text(encoding="utf-8")):
        return [("pyproject.toml", pyproject.read_bytes()), ("README.md", readme.read_bytes())]
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise UsageError(f"the grader's project files are not in {_REPO}, and no installed {DISTRIBUTION} "
                         "distribution describes them: install the grader with pip, or run it from its checkout") from None
    readme_text = dist.metadata.get_payload() or f"# {DISTRIBUTION}\n"
    return [("pyproject.toml", installed_pyproject(dist).encode()), ("README.md", readme_text.encode())]


def _names_this_project(pyproject: str) -> bool:
    return re.search(rf'^name\s*=\s*"{DISTRIBUTION}"\s*$', pyproject, re.MULTILINE) is not None


_SCRIPT_TABLES = {"console_scripts": "project.scripts", "gui_scripts": "project.gui-scripts"}
_EXTRA = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def installed_pyproject(dist: metadata.Distribution) -> str:
    """A ``pyproject.toml`` that builds ``dist`` again from its package's files: its name, version,
    summary, Python requirement, dependencies (an extra's as optional dependencies), scripts and entry points."""
    meta = dist.metadata
    required: list[str] = []
    optional: dict[str, list[str]] = {}
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        extra = _EXTRA.search(marker)
        if extra is None:
            required.append(requirement.strip())
            continue
        rest = re.sub(r"^\s*(and|or)\s+|\s+(and|or)\s*$", "", _EXTRA.sub("", marker)).strip()
        optional.setdefault(extra.group(1), []).append(spec.strip() + (f"; {rest}" if rest else ""))
    groups: dict[str, dict[str, str]] = {}
    for entry in dist.entry_points:
        groups.setdefault(entry.group, {})[entry.name] = entry.value
    q = json.dumps  # a JSON string is a TOML basic string

    def array(items: list[str]) -> str:
        return "[" + "".join(f"\n    {q(i)}," for i in items) + ("\n]" if items else "]")

    lines = [f"# Written by `grade package` from the metadata of the installed {meta['Name']} {meta['Version']}.",
             "[build-system]", 'requires = ["setuptools>=64"]', 'build-backend = "setuptools.build_meta"', "",
             "[project]", f"name = {q(meta['Name'])}", f"version = {q(meta['Version'])}",
             f"description = {q(meta['Summary'] or '')}", 'readme = "README.md"']
    if meta["Requires-Python"]:
        lines.append(f"requires-python = {q(meta['Requires-Python'])}")
    lines += [f"dependencies = {array(required)}", ""]
    if optional:
        lines += ["[project.optional-dependencies]", *(f"{q(k)} = {array(v)}" for k, v in optional.items()), ""]
    for group, entries in sorted(groups.items()):
        table = _SCRIPT_TABLES.get(group, f"project.entry-points.{q(group)}")
        lines += [f"[{table}]", *(f"{q(k)} = {q(v)}" for k, v in sorted(entries.items())), ""]
    lines += ["[tool.setuptools.packages.find]", f"include = [{q(DISTRIBUTION + '*')}]", ""]
    return "\n".join(lines)


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int) -> str:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)
    return name


WORKFLOW = """# Grades {notebook} on every push (written by `grade package github-classroom`).
# Only the public cases are here: hidden cases are graded by your instructor after the deadline.
name: Grade
on:
  push:
  workflow_dispatch:
permissions:
  contents: read
jobs:
  grade:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install the grader
        run: |
          sudo apt-get update && sudo apt-get install -y bubblewrap || echo "no bubblewrap: graded unsandboxed"
          python -m pip install "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu
          python -m pip install ./.grader
      - name: Grade {notebook}
        # One grading: the report for the log and the job summary, JUnit XML for the artifact. The step
        # fails as `grade` does: 1 while a case fails, 2 or 3 when the notebook could not be graded.
        run: |
          set +e
          grade {notebook} --root . --audience student --format junit -o grade-results.xml > grade-report.txt 2>&1
          status=$?
          set -e
          {{ echo {title}; echo; echo '```'; cat grade-report.txt; echo '```'; }} >> "$GITHUB_STEP_SUMMARY"
          cat grade-report.txt
          exit $status
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: grade-results
          path: grade-results.xml
          if-no-files-found: error
"""


def github_classroom(assignment: Assignment, out: Path, config: GradeConfig) -> list[str]:
    """Write a template repository's files for ``assignment`` into the folder ``out`` (new or empty);
    the paths it wrote, relative to ``out``."""
    from grader.authoring.release import release

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"-o {out} must be a new or empty folder (the template repository's files go there)")
    torch = metadata.version("torch").split("+")[0]
    with tempfile.TemporaryDirectory(prefix="grader-package-", dir=out.parent if out.parent.is_dir() else None) as tmp_name:
        staged = Path(tmp_name) / "repo"
        bundle = release(assignment, staged, config)
        for name, data in grader_sources():
            (staged / ".grader" / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / ".grader" / name).write_bytes(data)
        workflow = staged / ".github" / "workflows" / "grade.yml"
        workflow.parent.mkdir(parents=True)
        title = shlex.quote("## " + " ".join(assignment.title.split()))
        workflow.write_text(WORKFLOW.format(notebook=bundle.notebook.name, torch=torch, title=title), encoding="utf-8")
        (staged / ".gitignore").write_text("grade-results.xml\ngrade-report.txt\n__pycache__/\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for entry in staged.iterdir():
            shutil.move(str(entry), out / entry.name)
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
