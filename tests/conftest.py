"""Shared fixtures: one reference cache for the whole test session, and the repo's paths."""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = ROOT / "tests" / "submissions"

# One cache per session: the reference runs once per assignment, not once per test.
_OWN_CACHE = "GRADER_CACHE" not in os.environ
os.environ.setdefault("GRADER_CACHE", tempfile.mkdtemp(prefix="grader-test-cache-"))
os.environ["GRADER_ROOT"] = str(ROOT)


def run_grade(*args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path = ROOT):
    """Run the `grade` command as a user would, in a subprocess (``env`` adds to the environment)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "160", **(env or {})})


@pytest.fixture(scope="session", autouse=True)
def _remove_the_cache():
    """The session's reference cache goes when the tests end (unless the caller chose it)."""
    yield
    if _OWN_CACHE:
        import shutil
        shutil.rmtree(os.environ["GRADER_CACHE"], ignore_errors=True)


@pytest.fixture
def grade_cli():
    """The `grade` command as a function returning CompletedProcess."""
    return run_grade


def require_bwrap() -> None:
    """Skip a bubblewrap-mode test where bubblewrap cannot run (macOS); in CI, where .ci/run installs it, fail."""
    from grader.execute.sandbox import bwrap_usable

    if not bwrap_usable():
        if os.environ.get("CI"):
            pytest.fail("bubblewrap must be installed in CI (see .ci/run)")
        pytest.skip("bubblewrap is not available here")


def course(root: Path = ROOT):
    """The course at ``root``, as a trusted course (as ``--root`` gives it)."""
    from grader.course.resolve import Course
    return Course(Path(root), "option")


def readable_by_others(folder: Path) -> list[str]:
    """What in ``folder`` (itself included) gives any permission to group or others (links aside)."""
    found = []
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{path.relative_to(folder.parent)} {stat.filemode(mode)}")
    return found
