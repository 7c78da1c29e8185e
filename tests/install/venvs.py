"""Helpers of the install tests: fresh virtual environments, a user's environment, commands.

The grader as users install it: a wheel in fresh virtual environments, not this checkout.

These tests build the wheel once, install it (non-editable) into new virtual environments
and run what a user runs there. They take minutes (each environment installs torch), so
every module here is marked ``install`` (``pytestmark = pytest.mark.install``) and left out of the default run (``addopts`` in pyproject.toml);
``.ci/run`` runs them after the suite: ``python -m pytest -q -m install tests/install``.

torch is installed in each environment as ``torch==<the version here>``: pip takes the
local CPU wheel (or its cache), so nothing is downloaded twice.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run ``argv``, text in and out; the caller checks the result."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would have: nothing of this test session's grader settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "GRADER_ROOT", "GRADER_CACHE", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def torch_requirement() -> str:
    """torch pinned to the version here (local label dropped), so that pip reuses the local wheel."""
    return f"torch=={metadata.version('torch').split('+')[0]}"


@functools.lru_cache(maxsize=1)
def torch_wheel_is_local() -> bool:
    """Whether pip takes the pinned torch from a file on this machine (its find-links or cache), not a download
    (PyPI's Linux wheel is a CUDA build of several GB: each environment would fetch it again)."""
    p = run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--no-deps",
             "--ignore-installed", torch_requirement()], timeout=300)
    try:
        urls = [i["download_info"]["url"] for i in json.loads(p.stdout)["install"]]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(urls) and all(u.startswith("file:") for u in urls)


def make_venv(path: Path, *install: str) -> Path:
    """A new virtual environment at ``path`` with torch and ``install`` (pip arguments) in it; its python.
    Skips the test where torch would be downloaded (``torch_wheel_is_local``)."""
    if not torch_wheel_is_local():
        pytest.skip(f"pip would download {torch_requirement()} for every fresh environment here (no local wheel)")
    if path.exists():
        shutil.rmtree(path)
    p = run([sys.executable, "-m", "venv", str(path)])
    assert p.returncode == 0, p.stderr
    python = path / "bin" / "python"
    for args in ([torch_requirement()], list(install)):
        if args:
            p = run([str(python), "-m", "pip", "install", "-q", *args], timeout=900, env=clean_env())
            assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return python
