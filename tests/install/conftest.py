"""The install tests' shared fixture: the grader's wheel, built once (helpers: ``install.venvs``).

``tests/install`` is a package, so that this file is ``install.conftest`` and never shadows
``tests/conftest.py``, which the other tests import as ``conftest``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from install.venvs import ROOT, run


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The grader's wheel, built from this checkout as ``pip wheel`` builds it."""
    out = tmp_path_factory.mktemp("wheel")
    p = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    (built,) = out.glob("grader-*.whl")
    return built
