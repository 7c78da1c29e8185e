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

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path


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


def make_venv(path: Path, *install: str) -> Path:
    """A new virtual environment at ``path`` with torch and ``install`` (pip arguments) in it; its python."""
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
