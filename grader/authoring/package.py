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

- ``setup.sh``: run once when Gradescope builds the image: Python, pip, bubblewrap (best
  effort: Gradescope's containers may not allow its namespaces, and the grader then says so
  in every report), the CPU wheel of the torch version the reference outputs were computed
  with, and the grader itself from ``grader/`` and ``pyproject.toml``;
- ``run_autograder``: run for every submission; ``python3 -m grader.authoring.autograder``
  grades ``/autograder/submission/`` and always writes ``/autograder/results/results.json``
  (``grader.authoring.autograder``);
- ``autograder.json``: the assignment, the file name students upload, how hidden cases show;
- ``course/``: the assignment's folder (cases, known mistakes, checks) and its reference;
- ``cache/``: the reference's outputs and the mistake variants, computed now, so that no
  submission pays for them (recomputed there if Gradescope's torch differs).

Students never see the zip: it holds the reference. What they see is ``results.json``,
written for the student audience (hidden cases by name, points and result only).
"""
from __future__ import annotations

import json
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

_REPO = Path(__file__).resolve().parents[2]

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y python3 python3-pip python3-venv
apt-get install -y bubblewrap || echo "bubblewrap could not be installed: submissions run unsandboxed (reports say so)"
cd /autograder/source
python3 -m pip install --upgrade pip
python3 -m pip install "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu \\
  || python3 -m pip install "torch=={torch}"
python3 -m pip install .
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it always writes results/results.json.
export AUTOGRADER_ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$AUTOGRADER_ROOT/source"
export PYTHONPATH="$AUTOGRADER_ROOT/source${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m grader.authoring.autograder
"""


def gradescope(assignment: Assignment, out: Path, config: GradeConfig, hidden_as: str = "after_due_date") -> list[str]:
    """Write the autograder zip for ``assignment`` to ``out``; the names it holds."""
    if hidden_as not in HIDDEN_AS:
        raise UsageError(f"--hidden must be one of {', '.join(HIDDEN_AS)}, not {hidden_as!r}")
    if out.suffix != ".zip":
        raise UsageError(f"the autograder is a zip file: give -o a name ending in .zip, not {out.name}")
    torch = metadata.version("torch").split("+")[0]
    with tempfile.TemporaryDirectory(prefix="grader-package-") as tmp_name:
        tmp = Path(tmp_name)
        write_bundle(assignment, tmp, config)  # course/ and cache/, checked to reproduce the fingerprint
        settings = {"assignment": assignment.name, "file": f"{assignment.name}.ipynb", "hidden_as": hidden_as}
        files = {
            "setup.sh": (SETUP.replace("{torch}", torch), 0o755),
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
            for name, path in grader_sources():
                names.append(_add(zf, name, path.read_bytes(), 0o644))
            for path in sorted(p for p in tmp.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                names.append(_add(zf, str(path.relative_to(tmp)), path.read_bytes(), 0o644))
        partial.replace(out)
    return names


def grader_sources() -> list[tuple[str, Path]]:
    """The installable grader, as (name relative to its root, file): ``pyproject.toml``, the ``README.md`` it
    names, and the package's files (no caches)."""
    package = [p for p in sorted((_REPO / "grader").rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return [(name, _REPO / name) for name in ("pyproject.toml", "README.md")] + \
        [(str(p.relative_to(_REPO)), p) for p in package]


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
        run: |
          grade {notebook} --root . --format junit -o grade-results.xml || true
          set +e
          grade {notebook} --root . --audience student > grade-report.txt 2>&1
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
        for name, path in grader_sources():
            (staged / ".grader" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staged / ".grader" / name)
        workflow = staged / ".github" / "workflows" / "grade.yml"
        workflow.parent.mkdir(parents=True)
        title = shlex.quote("## " + " ".join(assignment.title.split()))
        workflow.write_text(WORKFLOW.format(notebook=bundle.notebook.name, torch=torch, title=title), encoding="utf-8")
        (staged / ".gitignore").write_text("grade-results.xml\ngrade-report.txt\n__pycache__/\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for entry in staged.iterdir():
            shutil.move(str(entry), out / entry.name)
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
