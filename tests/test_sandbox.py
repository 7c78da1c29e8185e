"""grader.execute.sandbox: what a worker's bubblewrap mounts, and what it hides, whatever the Python layout.

The mount plan is pure (``mount_args``, ``_hidden_paths`` with the interpreter's folders given),
so each layout users have is a case here: the grader in a venv's site-packages (a plain
``pip install .``), a venv under /tmp, a venv inside the course, a checkout under /usr. A real
worker then runs in the layouts this machine can make.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT, require_bwrap

import grader.execute.sandbox as sandbox
from grader.execute.sandbox import mount_args


def binds(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]


def masks(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]


def made(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--dir"]


def order(args: list[str]) -> list[str]:
    """Every mount and folder, in the order bubblewrap makes them."""
    return [args[i + 1] for i, a in enumerate(args) if a in ("--ro-bind", "--tmpfs", "--dir")]


@pytest.fixture
def layout(monkeypatch):
    """Pretend the interpreter's folders (``python_roots``) and import path (``sys.path``) are these."""
    def set_layout(roots: list[str], imports: list[str]) -> None:
        monkeypatch.setattr(sandbox, "python_roots", lambda: list(roots))
        monkeypatch.setattr(sandbox, "_import_dirs", lambda: list(imports))
    return set_layout


def test_a_venv_install_keeps_its_site_packages_visible(layout):
    """``pip install .`` puts the grader in site-packages: the folder above the package is site-packages,
    and hiding it (as a checkout is hidden) took torch away from every worker."""
    venv = "/home/ta/venv"
    site = f"{venv}/lib/python3.11/site-packages"
    layout([venv], [site])
    hidden = sandbox._hidden_paths([Path(site), Path("/home/ta/course"), Path(f"{venv}/lib")])
    assert hidden == []
    assert binds(mount_args([venv], hidden)) == [venv]


def test_a_course_inside_a_mounted_tree_is_masked_and_a_venv_inside_it_mounted_again(layout):
    """A checkout under /usr (visible through the system's mount) is masked; its own .venv, which the
    worker imports from, is mounted again on top of the mask."""
    checkout = "/usr/local/src/course"
    venv = f"{checkout}/.venv"
    layout(["/usr", venv], ["/usr/lib/python3.11", f"{venv}/lib/python3.11/site-packages"])
    hidden = sandbox._hidden_paths([Path(checkout)])
    assert hidden == [checkout]
    args = mount_args(["/usr", venv], hidden)
    assert masks(args) == [checkout] and binds(args) == [venv]
    assert order(args).index(checkout) < order(args).index(venv)


def test_a_cache_inside_the_environment_is_masked(layout):
    venv = "/opt/venv"
    layout([venv], [f"{venv}/lib/python3.11/site-packages"])
    hidden = sandbox._hidden_paths([Path(f"{venv}/course-cache")])
    assert hidden == [f"{venv}/course-cache"]
    args = mount_args([venv], hidden)
    assert order(args) == ["/opt", venv, f"{venv}/course-cache"]  # the deeper mount last: it wins


def test_a_venv_under_tmp_is_mounted_inside_the_sandboxs_own_tmp(layout):
    venv = "/tmp/ci/venv"
    layout([venv], [f"{venv}/lib/python3.11/site-packages"])
    args = mount_args([venv], [])
    assert made(args) == ["/tmp/ci"] and binds(args) == [venv]  # on the sized tmpfs, which comes first


def test_folders_on_the_way_are_made_once_and_never_inside_a_system_folder(layout):
    roots = ["/root/.pyenv/versions/3.11.7", "/root/.pyenv/versions/other", "/usr/local/lib/python3.11"]
    layout(roots, [])
    args = mount_args(roots, [])
    assert made(args) == ["/root", "/root/.pyenv", "/root/.pyenv/versions"]
    assert binds(args) == roots[:2]  # /usr is the system's, seen through its own mount


def test_nothing_that_is_not_mounted_is_masked(layout):
    layout(["/opt/venv"], [])
    assert sandbox._hidden_paths([Path("/home/ta/course"), Path("/tmp/x")]) == []
    assert sandbox._hidden_paths([Path("/usr"), Path("/opt/venv")]) == []  # never a whole mounted tree


@pytest.mark.parametrize("through_a_link", [False, True], ids=["direct", "through-a-link"])
def test_a_grader_installed_in_a_venvs_site_packages_grades(tmp_path, through_a_link):
    """The real thing, as ``pip install .`` lays it out: a venv whose site-packages holds the grader
    package and, through a .pth file, the packages it needs (torch among them; standing in for pip,
    which would copy them there). Hiding the folder above the package (site-packages) took torch
    away from every worker: exit 3 on every submission. The venv's python may be started by a path
    through a symbolic link (a ``current`` link to a release folder): the sandbox mounts real paths."""
    require_bwrap()
    import shutil
    import subprocess
    import sys
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shutil.copytree(ROOT / "grader", site / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADER_ROOT")}
    if through_a_link:
        (tmp_path / "current").symlink_to(venv, target_is_directory=True)
        python = tmp_path / "current" / "bin" / "python"
    p = subprocess.run([str(python), "-m", "grader", str(ROOT / "tests" / "submissions" / "mha" / "filled.ipynb"),
                        "--root", str(ROOT), "--sandbox", "bwrap", "--format", "json"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert report["score"] == report["max_score"] == 28
    imported = subprocess.run([str(python), "-c", "import grader; print(grader.__file__)"],
                              capture_output=True, text=True, cwd=tmp_path, env=env).stdout.strip()
    assert os.path.realpath(imported) == str(site / "grader" / "__init__.py")  # the venv's copy, not the checkout


def test_an_unusable_bubblewrap_is_said_with_its_reason(monkeypatch, tmp_path):
    """Installed but unable to make its namespaces (user namespaces restricted, as on some CI runners):
    the workers run unsandboxed and the isolation line says why, in bubblewrap's own words."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sandbox.bwrap_probe.cache_clear()
    try:
        assert sandbox.resolve_mode("auto") == "none"
        line = sandbox.describe("none")
        assert "bubblewrap is installed but cannot create its namespaces here " \
               "(bwrap: setting up uid map: Permission denied)" in line and "NOT sandboxed" in line
        from grader.errors import UsageError
        with pytest.raises(UsageError, match="cannot create its namespaces"):
            sandbox.resolve_mode("bwrap")
    finally:
        sandbox.bwrap_probe.cache_clear()


def test_a_missing_bubblewrap_is_said(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.bwrap_probe.cache_clear()
    try:
        assert "NOT sandboxed (bubblewrap is not installed)" in sandbox.describe("none")
    finally:
        sandbox.bwrap_probe.cache_clear()


@pytest.mark.skipif(os.geteuid() != 0, reason="as an ordinary user the worker reads what the grader reads")
def test_without_a_sandbox_the_report_says_whether_the_course_is_closed_to_the_code(request):
    """As root an unsandboxed worker runs as a uid of its own: it reads the course's reference and the cache
    only where they are open to others, and the isolation line says which (docs/security.md)."""
    import shutil
    import tempfile

    from grader.config import GradeConfig
    from grader.pipeline import grade_submission

    tmp_path = Path(tempfile.mkdtemp(prefix="grader-open-", dir="/tmp"))  # pytest's own folder is root's only
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    tmp_path.chmod(0o755)
    course = tmp_path / "course"
    shutil.copytree(ROOT / "tests" / "fixtures" / "course", course)
    cache = tmp_path / "cache"
    submission = ROOT / "tests" / "cross" / "victim.py"
    config = GradeConfig(root=course, assignment="toy", sandbox="none", cache_dir=cache)
    for mode in (0o755, 0o700):
        for folder in (course, cache):
            folder.mkdir(exist_ok=True)
            folder.chmod(mode)
            for p in folder.rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
        open_to_all = mode == 0o755
        assert sandbox.readable_unsandboxed([course / "reference", cache], own_uid=True) is open_to_all
        assert sandbox.readable_unsandboxed([course / "reference", cache], own_uid=False)  # the grader's user
        line = grade_submission(submission, config).isolation
        assert ("the course's reference and cached answers among them" in line) is open_to_all, line
        assert ("but not the course's files or the cache" in line) is not open_to_all, line
