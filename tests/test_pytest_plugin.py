"""`python -m pytest --grade SUBMISSION` (``grader/pytest_plugin.py``), run as a student runs it: in a
released bundle, in a fresh pytest process that finds the plugin through its ``pytest11`` entry point."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, course
from grader.authoring.release import release
from grader.config import GradeConfig
from grader.course.assignments import get_assignment

MHA = get_assignment(course(), "mha")
PUBLIC = [c for c in MHA.cases if not c.hidden]
HIDDEN = [c for c in MHA.cases if c.hidden]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The mha bundle as students get it, with a correct and a buggy submission beside the template."""
    out = tmp_path_factory.mktemp("plugin") / "bundle"
    release(MHA, out, GradeConfig())
    for name in ("correct_einsum.py", "bug_sqrt_dfeat.py", "bug_missing_lin_O.py"):
        shutil.copy(ROOT / "tests" / "submissions" / "mha" / name, out / name)
    return out


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """A student's `python -m pytest ...` in ``cwd``: no course configured, plugins found as installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ROOT", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_correct_notebook_passes_one_test_per_public_case_and_skips_the_hidden_ones(bundle):
    p = _pytest(bundle, "--grade", "correct_einsum.py", "-v", "-rs")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    for case in PUBLIC:  # each case an item, under its class, named as the report names it
        assert f"correct_einsum.py::{case.target}::{case.name} PASSED" in p.stdout
    assert f"{len(PUBLIC)} passed, {len(HIDDEN)} skipped" in p.stdout
    assert "graded after submission" in p.stdout
    assert "score" in p.stdout and "public cases only" in p.stdout  # the plugin's closing section


def test_a_buggy_notebook_fails_with_the_cause_and_junit_and_k_work(bundle, tmp_path):
    junit = tmp_path / "junit.xml"
    p = _pytest(bundle, "--grade", "bug_missing_lin_O.py", f"--junitxml={junit}")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-2000:]
    failed = [line for line in p.stdout.splitlines() if line.startswith("FAILED ")]
    assert failed and all("MultiHeadedAttention" in line for line in failed)
    batch1 = next(c for c in MHA.cases if c.name == "MultiHeadedAttention: batch of 1")
    assert f"{batch1.name} (0/{batch1.points:g} points)" in p.stdout  # a failure's heading: the case, its points
    assert "Cause 1: `x` differs from the reference" in p.stdout
    assert "`x` equals the reference's `x_rsh2`: is a step missing after it?" in p.stdout
    assert "grader/" not in p.stdout and "Traceback" not in p.stdout  # the cause, not the grader's stack
    tree = ET.parse(junit).getroot()
    cases = tree.findall(".//testcase")
    assert len(cases) == len(MHA.cases)
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == len(failed)
    assert all("Cause" in (c.find("failure").get("message", "") + (c.find("failure").text or "")) for c in failures)
    scores = {prop.get("name") for c in cases for prop in c.iter("property")}
    assert {"score", "max_score", "visibility"} <= scores

    only = _pytest(bundle, "--grade", "bug_missing_lin_O.py", "-k", "ScaledDotProductAttention", "-q")
    sdpa = [c for c in PUBLIC if c.target == "ScaledDotProductAttention"]
    assert only.returncode == 0 and f"{len(sdpa)} passed" in only.stdout, only.stdout[-2000:]
    first = _pytest(bundle, "--grade", "bug_missing_lin_O.py", "-x", "-q")
    assert first.returncode == 1 and "1 failed" in first.stdout and "stopping after 1 failures" in first.stdout


def test_the_template_notebook_fails_every_case_with_where_and_the_fix(bundle):
    p = _pytest(bundle, "--grade", "mha.ipynb", "-q")
    assert p.returncode == 1 and f"{len(PUBLIC)} failed, {len(HIDDEN)} skipped" in p.stdout, p.stdout[-3000:]
    assert "Where: cell" in p.stdout and "Fix: Replace `# FILL IN HERE` with your code" in p.stdout


def test_the_plugin_does_nothing_without_grade_and_a_bad_submission_is_a_usage_error(bundle, tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    assert True\n")
    p = _pytest(tmp_path, "-q")
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout + p.stderr
    assert "--grade=SUBMISSION" in _pytest(tmp_path, "--help").stdout  # registered by its entry point
    missing = _pytest(bundle, "--grade", "nothing_here.py", "-q")
    assert missing.returncode == 4 and "no such file" in missing.stderr, missing.stderr[-2000:]
    unknown = _pytest(bundle, "--grade", "bug_sqrt_dfeat.py", "--grade-assignment", "nope", "-q")
    assert unknown.returncode == 4 and "unknown assignment 'nope'" in unknown.stderr, unknown.stdout + unknown.stderr
    assert "Traceback" not in unknown.stdout + unknown.stderr
    # with --grade, the session holds the cases only: the bundle's own files are not collected
    (bundle / "test_stray.py").write_text("def test_stray():\n    raise AssertionError('collected')\n")
    try:
        p = _pytest(bundle, "--grade", "bug_sqrt_dfeat.py", "-q", "-k", "ScaledDotProductAttention")
    finally:
        (bundle / "test_stray.py").unlink()
    assert "collected" not in p.stdout and p.returncode == 0, p.stdout[-2000:]
