"""Warm slots: torch imported once per slot, a fresh forked worker per submission, nothing between them.

A submission graded in a slot must get exactly the result it gets alone (a cold worker), whatever
the submission graded before it in the same slot did: forge results, leave daemons that kill,
stop or alter processes, plant modules, fill the disk, the processes or IPC. ``cross/probe.py``
scores 4/4 only in a sandbox where nothing of an earlier run is left, so it is run after every
hostile submission of ``tests/hostile`` too, and each of those must score in a slot what it
scores alone.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from conftest import ROOT, require_bwrap
from test_hostile import EXPECTED, HOSTILE, expectation, tagged_processes

from grader.config import GradeConfig, Limits
from grader.execute.slots import WarmSlot
from grader.pipeline import grade_submission

CROSS = ROOT / "tests" / "cross"
COURSE = ROOT / "tests" / "fixtures" / "course"
LIMITS = Limits(memory_mb=1500, processes=32)
CONFIG = GradeConfig(root=COURSE, assignment="toy", sandbox="bwrap", timeout=60, case_timeout=3, limits=LIMITS)


@pytest.fixture(autouse=True)
def _bwrap():
    require_bwrap()


def outcome(report) -> tuple:
    """What a grade is: the score, each case's status and points, the causes."""
    return (report.score, [(r.case_id, r.status, r.score) for r in report.cases],
            [c.title for c in report.causes])


def prepared(tmp_path, name: str, folder=CROSS, tag: str = "none"):
    path = tmp_path / name
    path.write_text((folder / name).read_text().replace("PORT", "9").replace("MARKER", tag))
    return path


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """The victims graded alone, each by a cold worker."""
    tmp = tmp_path_factory.mktemp("solo")
    return {name: outcome(grade_submission(prepared(tmp, name), CONFIG)) for name in ("victim.py", "probe.py")}


@pytest.fixture
def tag(monkeypatch):
    """This test's run tag: every worker token (the slot's, each child's) starts with it."""
    tag = f"warm{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GRADER_RUN_TAG", tag)
    return tag


def test_the_victims_alone(solo):
    assert solo["victim.py"][0] == 3 and solo["probe.py"][0] == 4


def test_a_slot_forks_warm_workers_and_says_so(tmp_path, solo, tag):
    with WarmSlot("bwrap", LIMITS) as slot:
        reports = [grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot) for _ in range(3)]
        assert slot.zygotes_started == 1 and slot.forks == 3 and slot.fallbacks == 0
    assert all(outcome(r) == solo["victim.py"] for r in reports)
    assert "forked from a warm worker" in reports[0].isolation
    time.sleep(0.2)
    assert tagged_processes(tag) == []


@pytest.mark.parametrize("attack", ["plant_and_forge.py", "kill_later.py", "fill_slot.py"])
def test_a_submission_cannot_reach_the_next_one_in_its_slot(tmp_path, solo, tag, attack):
    with WarmSlot("bwrap", LIMITS) as slot:
        grade_submission(prepared(tmp_path, attack, tag=tag), CONFIG, slot)
        victim = grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        probe = grade_submission(prepared(tmp_path, "probe.py"), CONFIG, slot)
        assert slot.fallbacks == 0 and slot.forks == 3
    assert outcome(victim) == solo["victim.py"]
    assert outcome(probe) == solo["probe.py"]
    time.sleep(0.2)
    assert tagged_processes(tag) == []


def test_every_hostile_submission_scores_in_a_slot_what_it_scores_alone_and_leaves_nothing(tmp_path, solo, tag):
    names = sorted(n for n, spec in EXPECTED.items() if "bwrap" in spec.get("modes", ["bwrap", "none"]))
    wrong = []
    with WarmSlot("bwrap", LIMITS) as slot:
        for name in names:
            spec = expectation(name, "bwrap")
            report = grade_submission(prepared(tmp_path, name, HOSTILE, tag), CONFIG, slot)
            errors = sorted(r.case_id for r in report.cases if r.status == "error")
            if report.score != spec["score"] or errors != sorted(spec.get("errors", [])):
                wrong.append(f"{name}: {report.score} {errors}")
            after = outcome(grade_submission(prepared(tmp_path, "probe.py"), CONFIG, slot))
            if after != solo["probe.py"]:
                wrong.append(f"probe after {name}: {after}")
        assert slot.fallbacks == 0
    assert wrong == []
    time.sleep(0.2)
    assert tagged_processes(tag) == []
    assert not [f for f in os.listdir("/tmp") if f.startswith(f"grader-{tag}")]


def test_a_zygote_killed_between_runs_is_replaced(tmp_path, solo, tag):
    import signal

    with WarmSlot("bwrap", LIMITS) as slot:
        first = grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        os.killpg(slot._zygote.proc.pid, signal.SIGKILL)  # the whole sandbox, as an outside kill would
        second = grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        assert slot.zygotes_started == 2 and slot.forks == 2 and slot.fallbacks == 0
    assert outcome(first) == outcome(second) == solo["victim.py"]


def test_a_zygote_that_cannot_start_leaves_cold_workers(tmp_path, solo, tag, monkeypatch):
    import grader.execute.slots as slots

    monkeypatch.setattr(slots, "STARTUP_TIMEOUT", 0.01)  # it is never warm in time
    with WarmSlot("bwrap", LIMITS) as slot:
        reports = [grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot) for _ in range(2)]
        assert slot.cold and slot.forks == 0 and slot.fallbacks == 2 and slot.zygotes_started == 1
    assert all(outcome(r) == solo["victim.py"] for r in reports)
    assert "forked" not in reports[0].isolation


def _as_nobody(argv: list[str], cwd) -> "subprocess.CompletedProcess | None":
    import shutil
    import subprocess
    import sys

    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        return None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONPATH": str(ROOT)}
    probe = subprocess.run([runuser, "-u", "nobody", "--", "env", *[f"{k}={v}" for k, v in env.items()],
                            sys.executable, "-c", "import torch\nfrom grader.execute.sandbox import bwrap_usable\n"
                            "assert bwrap_usable()"], capture_output=True, cwd=cwd)
    if probe.returncode != 0:
        return None
    return subprocess.run([runuser, "-u", "nobody", "--", "env", *[f"{k}={v}" for k, v in env.items()],
                           sys.executable, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)


NOBODY = '''
import json, sys
from pathlib import Path
from grader.config import GradeConfig, Limits
from grader.execute.slots import WarmSlot
from grader.pipeline import grade_submission
here = Path(sys.argv[1])
limits = Limits(memory_mb=1500, processes=32)
config = GradeConfig(root=Path(sys.argv[2]), assignment="toy", sandbox="bwrap", timeout=60, case_timeout=3,
                     limits=limits, cache_dir=here / "cache")
solo = {n: grade_submission(here / n, config).score for n in ("victim.py", "probe.py")}
after = []
with WarmSlot("bwrap", limits) as slot:
    for attack in ("plant_and_forge.py", "kill_later.py", "fill_slot.py"):
        grade_submission(here / attack, config, slot)
        after.append([grade_submission(here / n, config, slot).score for n in ("victim.py", "probe.py")])
    print(json.dumps({"solo": solo, "after": after, "fallbacks": slot.fallbacks, "forks": slot.forks}))
'''


@pytest.fixture
def open_folder():
    """A folder an unprivileged user may use (pytest's own is root's only)."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="grader-warm-nobody-", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_without_root_a_submission_that_kills_the_zygote_costs_time_not_results(open_folder):
    """As an ordinary user every child shares the zygote's uid: one that kills it gets the slot a new
    one, and the next submissions score exactly what they score alone. Runs where the interpreter
    and the packages are readable by ``nobody`` (a root-only Python environment cannot be)."""
    tmp_path = open_folder
    for name in ("victim.py", "probe.py", "plant_and_forge.py", "kill_later.py", "fill_slot.py"):
        prepared(tmp_path, name, tag="nobody").chmod(0o644)
    (tmp_path / "run.py").write_text(NOBODY)
    p = _as_nobody([str(tmp_path / "run.py"), str(tmp_path), str(COURSE)], tmp_path)
    if p is None:
        pytest.skip("no unprivileged user can run this Python environment, or bubblewrap, here")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["solo"] == {"victim.py": 3.0, "probe.py": 4.0}
    assert result["after"] == [[3.0, 4.0]] * 3
    assert result["fallbacks"] == 0 and result["forks"] == 9


@pytest.fixture
def environment_under_tmp(request, monkeypatch):
    """A read-only tree of 20,000 files in 4,000 folders, mounted into every sandbox as a Python environment under /tmp is
    (a venv made by a CI runner or tox): the same path, read-only, inside the sandbox's own /tmp."""
    import grader.execute.sandbox as sandbox

    import shutil
    import tempfile
    from pathlib import Path

    tree = Path(tempfile.mkdtemp(prefix="grader-test-venv-", dir="/tmp"))  # right under /tmp, as venvs often are
    request.addfinalizer(lambda: shutil.rmtree(tree, ignore_errors=True))
    for d in range(4000):  # more folders than a venv with torch has, two thirds of its files
        folder = tree / "lib" / f"pkg{d // 50}" / f"sub{d}"
        folder.mkdir(parents=True)
        for f in range(5):
            (folder / f"m{f}.py").write_bytes(b"")
    roots = sandbox.python_roots()
    monkeypatch.setattr(sandbox, "python_roots", lambda: [*roots, str(tree)])
    return tree


def test_a_python_environment_under_tmp_keeps_the_slot_warm(tmp_path, solo, tag, environment_under_tmp):
    """The zygote's clean-up empties only the sandbox's own tmpfs: it never walks the environment's
    mount (it used to try to remove its every file, took longer than the slot's answer timeout, and
    every submission silently fell back to a cold worker), and it takes no time worth measuring."""
    with WarmSlot("bwrap", LIMITS) as slot:
        settles = []
        for name in ("victim.py", "probe.py", "fill_slot.py", "probe.py"):
            report = grade_submission(prepared(tmp_path, name, tag=tag), CONFIG, slot)
            start = time.perf_counter()
            slot.settle()
            settles.append(time.perf_counter() - start)
            if name == "probe.py":
                assert outcome(report) == solo["probe.py"]  # the mount is not a leftover; nothing else is
        tally = slot.tally()
    assert (tally.zygotes_started, tally.forks, tally.cold, tally.replaced) == (1, 4, 0, 0), tally
    assert max(settles) < 0.5, settles  # walking it took 1-2 s here, a real venv over 10 s
    assert sum(1 for _ in environment_under_tmp.rglob("*.py")) == 20_000  # read-only, untouched


def test_a_slot_tallies_what_happened_and_why(tmp_path, solo, tag, monkeypatch):
    """What a batch reports is the slot's tally: a zygote killed between runs is replaced (with the
    reason), one that cannot start leaves cold workers (with its reason)."""
    import signal

    import grader.execute.slots as slots

    with WarmSlot("bwrap", LIMITS) as slot:
        grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        before = slot.tally()
        os.killpg(slot._zygote.proc.pid, signal.SIGKILL)
        grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        since = slot.tally() - before
    assert (before.zygotes_started, before.forks, before.replaced) == (1, 1, 0)
    assert (since.zygotes_started, since.forks, since.cold, since.replaced) == (1, 1, 0, 1)
    assert len(since.reasons) == 1 and since.reasons[0]
    monkeypatch.setattr(slots, "STARTUP_TIMEOUT", 0.01)
    with WarmSlot("bwrap", LIMITS) as slot:
        grade_submission(prepared(tmp_path, "victim.py"), CONFIG, slot)
        tally = slot.tally()
    assert (tally.zygotes_started, tally.forks, tally.cold, tally.replaced) == (1, 0, 1, 0)
    assert tally.reasons[0].startswith("it never started: no answer within")


def test_what_a_childs_code_would_import_slowly_is_imported_once_in_the_zygote(tmp_path, tag):
    """A torch.library custom op's first call imports torch._dynamo (about a second): a slot whose
    submissions define one has its zygote import it once, between children, so no later child pays it;
    the grade stays the cold worker's."""
    from grader.execute.slots import worth_preloading

    mha = ROOT / "tests" / "submissions" / "mha"
    assert worth_preloading([(mha / "forbidden_custom_op.py").read_text()]) == {"torch._dynamo"}
    assert not any(worth_preloading([p.read_text()]) for p in mha.glob("correct_*.py"))
    config = GradeConfig(assignment="mha", sandbox="bwrap")
    alone = outcome(grade_submission(mha / "forbidden_custom_op.py", config))
    with WarmSlot("bwrap", config.limits, (mha,)) as slot:
        cpu = []
        for _ in range(2):
            before = slot.worker_cpu
            report = grade_submission(mha / "forbidden_custom_op.py", config, slot)
            slot.settle()
            cpu.append(slot.worker_cpu - before)
            assert outcome(report) == alone
        assert slot._zygote is not None and slot._zygote.preloaded == {"torch._dynamo"}
        assert (slot.zygotes_started, slot.fallbacks, slot.replaced) == (1, 0, 0)
    assert cpu[1] < cpu[0] - 0.3, cpu  # the first one's public worker imported it itself; then no worker did
