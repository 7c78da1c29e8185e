"""Shared fixtures: one reference cache for the whole test session, the repo's paths, and the markers.

Markers are given here, from what each test uses (its code, the helpers of its module it calls, its
fixtures, recursively), so that no list must be kept by hand:

- ``e2e``: the test starts the grader's own machinery: the `grade` command, a grading worker, a warm
  slot, the batch's grading processes, a Dask cluster. ``python -m pytest -m "not e2e"`` is the fast
  loop (the pure tests: reading, slicing, checks, wording, the stores, the class page);
- ``bwrap``: the test needs bubblewrap (it asks for it, or runs a case in the ``bwrap`` mode).
"""
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


#: Names whose use starts the grader's machinery (``e2e``).
E2E_NAMES = frozenset({
    "run_grade", "grade_cli", "grade_submission", "grade_source", "check", "Pool", "WarmSlot", "Cluster",
    "run_batch", "expected_outputs", "variant_outputs", "run_cases", "start_worker", "Worker", "Zygote",
    "new_worker", "NotebookClient", "package", "validate", "release",
})
#: Text that runs the grader in another process (``python -m grader``, a script importing it).
_GRADER_CODE = ("from grader", "import grader")


def _used_names(code, seen: set, module: dict, fixtures: dict, depth: int = 0) -> set[str]:
    """Every global name ``code`` uses, with those of the module's own functions and of the fixtures it
    calls, recursively."""
    if id(code) in seen or depth > 8:
        return set()
    seen.add(id(code))
    names = set(code.co_names) | set(code.co_varnames)
    texts = [c for c in code.co_consts if isinstance(c, str)]
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _used_names(const, seen, module, fixtures, depth + 1)
    for name in list(names):
        target = module.get(name)
        if isinstance(target, str):
            texts.append(target)
        if callable(target) and getattr(target, "__module__", None) == module.get("__name__"):
            inner = getattr(target, "__code__", None) or getattr(getattr(target, "__init__", None), "__code__", None)
            if inner is not None:
                names |= _used_names(inner, seen, module, fixtures, depth + 1)
        for fixture in fixtures.get(name, ()):
            fn = getattr(fixture, "func", None)
            if fn is not None and hasattr(fn, "__code__"):
                names |= _used_names(fn.__code__, seen, vars(sys.modules.get(fn.__module__, sys)), fixtures,
                                     depth + 1)
    if any(t == "grader" or any(g in t for g in _GRADER_CODE) for t in texts):
        names.add("run_grade")  # it runs the grader in another process
    return names


def pytest_collection_modifyitems(config, items):
    for item in items:
        fn = getattr(item, "function", None)
        if fn is None:
            continue
        fixtures = dict(getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {})
        names = _used_names(fn.__code__, set(), vars(item.module), fixtures)
        names |= set(item.fixturenames)
        if names & E2E_NAMES:
            item.add_marker(pytest.mark.e2e)
        callspec = getattr(item, "callspec", None)
        if names & {"require_bwrap", "bwrap_usable"} or (callspec is not None and "bwrap" in callspec.id.split("-")):
            item.add_marker(pytest.mark.bwrap)


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
