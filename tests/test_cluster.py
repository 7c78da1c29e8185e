"""grade batch --scheduler: a real `dask scheduler` and `dask worker` processes on loopback, started here.

The class is graded on the cluster into the same gradebook as the local pool gives; resume,
and --regrade work as locally; a worker killed mid-run costs nothing; a submission that
takes its worker down every time is found (the chunk split down to it) and recorded as an error;
workers that differ from this machine are refused; a worker without a working bubblewrap is never
given work unless allowed, and then its submissions reach nothing on the network; Ctrl-C on the
client leaves no grading process on the workers and the same command resumes; a scheduler that
dies mid-batch is exit 2, with what was graded kept.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

from conftest import ROOT, SUBMISSIONS, run_grade  # noqa: E402
from test_hostile import Listener  # noqa: E402

HERE = Path(__file__).resolve().parent
KILL_SWITCH = HERE / "cluster" / "preload_kill_switch.py"
OTHER_TORCH = HERE / "cluster" / "preload_other_torch.py"
MARKER = "# test: this submission takes its Dask worker down"
CLASS = {  # correct, three known mistakes, the untouched template (and, below, a slow one and a memory hog)
    "alice": SUBMISSIONS / "mha" / "filled.ipynb",
    "bob": SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py",
    "carol": ROOT / "assignments" / "mha" / "mha.ipynb",
    "dave": SUBMISSIONS / "mha" / "bug_softmax_dim1.py",
    "erin": SUBMISSIONS / "mha" / "bug_hardcoded_dk.py",
}
COMPARED = ("gradebook.csv", "gradebook_points.csv", "canvas_import.csv", "similarity.csv")


def _own_session_ending_with_us() -> None:
    """In each `dask` process before it starts: a session of its own (killed as a group), and SIGKILL
    when this test process dies, however it dies, so that a killed test run leaves no cluster behind."""
    import ctypes

    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Cluster:
    """A scheduler and ``workers`` sandboxed workers, each `dask` process in its own session; every process
    this test started (and all they started) carries GRADER_RUN_TAG=tag, so only those are counted."""

    def __init__(self, folder: Path, workers: int = 2, death_timeout: int = 20):
        self.folder = folder
        self.death_timeout = death_timeout
        self.tag = f"dask-{uuid.uuid4().hex[:8]}"
        self.graded_log = folder / "graded.log"
        self.env = {**os.environ, "GRADER_RUN_TAG": self.tag, "PYTHONPATH": str(ROOT),
                    "GRADER_TEST_GRADED_LOG": str(self.graded_log),
                    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        self.processes: list[subprocess.Popen] = []
        info = folder / "scheduler.json"
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(info)], "scheduler")
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        self.workers = [self.add_worker(f"w{i}", KILL_SWITCH) for i in range(1, workers + 1)]
        if workers:
            self.wait_for(workers)

    def _start(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.folder, env={**self.env, **(env or {})},
                             stdout=log, stderr=subprocess.STDOUT, preexec_fn=_own_session_ending_with_us)
        self.processes.append(p)
        return p

    def add_worker(self, name: str, preload: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self._start(["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                            "--death-timeout", str(self.death_timeout),  # its scheduler gone, it ends by itself
                            "--name", name, "--local-directory", str(self.folder / name), "--preload", str(preload)],
                           name, env)

    def add_bare_worker(self, name: str) -> subprocess.Popen:
        """A worker where bubblewrap cannot make its namespaces (a `bwrap` first on PATH that fails as it does
        where user namespaces are not allowed); what it starts to grade is logged to ``<name>.graded.log``."""
        fake = self.folder / "no-namespaces"
        fake.mkdir(exist_ok=True)
        (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
        (fake / "bwrap").chmod(0o755)
        return self.add_worker(name, KILL_SWITCH, {"PATH": f"{fake}:{os.environ['PATH']}",
                                                   "GRADER_TEST_GRADED_LOG": str(self.folder / f"{name}.graded.log")})

    def stop(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, set_as_default=False) as client:
            deadline = time.monotonic() + 60
            while len(client.scheduler_info(n_workers=-1)["workers"]) != n:
                assert time.monotonic() < deadline, f"the cluster never had {n} workers"
                time.sleep(0.1)

    def ours(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if f"GRADER_RUN_TAG={self.tag}" in "\0".join(f"{k}={v}" for k, v in p.environ().items()):
                    found.append(p)
            except (psutil.Error, OSError):
                pass
        return found

    def grading(self) -> list[psutil.Process]:
        """Our grading processes and sandboxed workers (what a batch's end must leave none of)."""
        out = []
        for p in self.ours():
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "grader.batch.workers" in cmd or "grader.execute" in cmd:
                out.append(p)
        return out

    def close(self) -> None:
        for p in reversed(self.processes):
            if p.poll() is None:
                self.stop(p)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.close()
    deadline = time.monotonic() + 20
    while c.ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.ours() == [], "processes of the test's cluster were left behind"


def _class(folder: Path, extra: dict[str, str] | None = None) -> Path:
    folder.mkdir()
    for student, path in CLASS.items():
        shutil.copy(path, folder / f"{student}{path.suffix}")
    for student, text in (extra or {}).items():
        (folder / f"{student}.py").write_text(text)
    return folder


def _slow() -> str:
    """A correct submission whose class body sleeps: it is mid-run long enough to be caught there."""
    code = (SUBMISSIONS / "mha" / "correct_einsum.py").read_text()
    return code.replace("class MultiHeadedAttention(nn.Module):",
                        "class MultiHeadedAttention(nn.Module):\n    import time as _t\n    _t.sleep(1)\n", 1)


def _memory_hog() -> str:
    """A correct submission whose MultiHeadedAttention's class body asks for 8 GB: a MemoryError under the
    sandbox's address-space limit, so that class is missing; a result, never run again."""
    code = (SUBMISSIONS / "mha" / "correct_einsum.py").read_text()
    return code.replace("class MultiHeadedAttention(nn.Module):",
                        "class MultiHeadedAttention(nn.Module):\n    _hoard = bytearray(8 * 1024 ** 3)\n", 1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _class(tmp_path_factory.mktemp("c") / "class", {"frank": _slow(), "gina": _memory_hog()})


@pytest.fixture(scope="module")
def local(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "-j", "2", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def _same_outputs(out: Path, local: Path) -> None:
    for name in COMPARED:
        assert (out / name).read_text() == (local / name).read_text(), name
    ours = sorted(p.name for p in (out / "feedback").iterdir())
    assert ours == sorted(p.name for p in (local / "feedback").iterdir())
    for name in ours:
        if name.endswith(".json"):
            a, b = (json.loads((d / "feedback" / name).read_text()) for d in (out, local))
            a.pop("execution_time"), b.pop("execution_time")
            assert a == b, name


def test_a_class_on_two_workers_gives_the_local_gradebook(cluster, source, local, tmp_path):
    out = tmp_path / "out"
    cluster.graded_log.write_text("")
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address,
                  "--chunk-size", "2", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "7 submissions (folder layout), 7 graded now" in p.stdout
    graded = sorted(cluster.graded_log.read_text().split())
    assert graded == sorted(p.name for p in source.iterdir())  # each once: gina's memory blow-up not retried
    assert "gina,,11,28,graded" in (out / "gradebook.csv").read_text()
    assert f"cluster: 2 Dask workers at {cluster.address}, 2 grading processes, 2 with warm slots" in p.stdout
    assert "workers: 2 warm slots, 2 zygotes started" in p.stdout
    _same_outputs(out, local)
    alice = json.loads(next((out / "feedback").glob("alice-*.json")).read_text())
    assert alice["score"] == 28  # the client's file name, not the worker's copy
    with sqlite3.connect(out / "grades.sqlite") as db:  # the client's file and course, not the worker's copies
        reports = [json.loads(r) for (r,) in db.execute("SELECT report FROM results")]
    assert {Path(r["submission"]).parent for r in reports} == {source}
    assert {r["course"] for r in reports} == {str(ROOT)}
    _nothing_grading(cluster)  # the batch's plugin is gone from the workers, with its processes

    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address)
    assert again.returncode == 0 and "0 graded now, 7 already in the store" in again.stdout
    every = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address,
                      "--regrade", timeout=600)
    assert every.returncode == 0 and "7 graded now, 0 already" in every.stdout
    _same_outputs(out, local)


def _nothing_grading(cluster: Cluster) -> None:
    deadline = time.monotonic() + 30
    while cluster.grading() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.grading() == []


def _busy_worker(cluster: Cluster) -> psutil.Process | None:
    """A Dask worker process (a nanny's child) whose warm slot is running a submission right now."""
    for nanny in cluster.workers:
        try:
            for worker in psutil.Process(nanny.pid).children():
                for p in worker.children(recursive=True):
                    if "grader.execute.zygote" in " ".join(p.cmdline()) and p.children():
                        return worker
        except psutil.Error:
            continue
    return None


def test_a_worker_killed_mid_run_still_gives_the_complete_identical_gradebook(cluster, source, local, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "batch", str(source), "--assignment", "mha", "--out", str(out),
               "--scheduler", cluster.address, "--chunk-size", "2"]
    batch = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "COLUMNS": "160"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and batch.poll() is None and time.monotonic() < deadline:
        victim = _busy_worker(cluster)
        time.sleep(0.02)
    assert victim is not None, "no worker was ever caught grading"
    victim.kill()  # SIGKILL, mid-submission: its task is Dask's to run again
    stdout, stderr = batch.communicate(timeout=600)
    assert batch.returncode == 0, stdout + stderr
    assert "7 graded now" in stdout
    _same_outputs(out, local)
    cluster.wait_for(2)  # the nanny started the killed worker again
    _nothing_grading(cluster)  # the killed worker's grading processes ended with it


def test_a_submission_that_takes_its_worker_down_every_time_is_an_error(cluster, tmp_path):
    killer = (SUBMISSIONS / "mha" / "correct_einsum.py").read_text() + f"\n{MARKER}\n"
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", folder / "alice.ipynb")
    (folder / "kim.py").write_text(killer)
    shutil.copy(SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py", folder / "bob.py")
    shutil.copy(SUBMISSIONS / "mha" / "correct_einsum.py", folder / "dan.py")
    out = tmp_path / "out"
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address,
                  "--chunk-size", "2", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr  # every submission has a result
    rows = {r.split(",")[0]: r.split(",") for r in (out / "gradebook.csv").read_text().splitlines()[1:]}
    assert {k: v[2:5] for k, v in rows.items()} == {"alice": ["28", "28", "graded"], "bob": ["14", "28", "graded"],
                                                    "dan": ["28", "28", "graded"], "kim": ["0", "28", "error"]}
    kim = " ".join(next((out / "feedback").glob("kim-*.txt")).read_text().split())
    assert "the grading machine's process ended 2 times while grading this submission" in kim
    assert "the last time with nothing else running" in kim
    cluster.wait_for(2)


def test_workers_unlike_this_machine_are_refused(cluster, source, tmp_path):
    odd = cluster.add_worker("odd", OTHER_TORCH)
    try:
        cluster.wait_for(3)
        p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(tmp_path / "out"),
                      "--scheduler", cluster.address)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "these Dask workers cannot grade like this machine, so the batch is refused" in p.stderr
        assert "torch 1.0.0 (this machine: " in p.stderr and p.stderr.count("tcp://127.0.0.1:") == 1
        assert not (tmp_path / "out" / "gradebook.csv").exists()
    finally:
        cluster.stop(odd)
        cluster.processes.remove(odd)
    cluster.wait_for(2)


def test_an_unreachable_scheduler_is_a_usage_error(source, tmp_path):
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(tmp_path / "out"),
                  "--scheduler", "tcp://127.0.0.1:9", env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert p.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in p.stderr, p.stderr


def _stored(out: Path) -> int:
    """How many results the batch's store holds now (read-only: never creates the file)."""
    path = out / "grades.sqlite"
    if not path.is_file():
        return 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_ctrl_c_on_the_client_leaves_no_grading_process_and_the_same_command_resumes(cluster, source, local,
                                                                                       tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "batch", str(source), "--assignment", "mha", "--out", str(out),
               "--scheduler", cluster.address, "--chunk-size", "2"]
    batch = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "COLUMNS": "160"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while (_stored(out) == 0 or _busy_worker(cluster) is None) and batch.poll() is None:
            assert time.monotonic() < deadline, "the batch never had a result stored and a chunk in flight"
            time.sleep(0.02)
        batch.send_signal(signal.SIGINT)  # Ctrl-C, with chunks in flight on the workers
        stdout, stderr = batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    saved = _stored(out)
    assert 0 < saved < len(list(source.iterdir()))
    assert (f"saved in {out / 'grades.sqlite'} ({saved} of 7 in the store); run the same command again to grade "
            "the rest") in stderr
    _nothing_grading(cluster)  # the workers' pools closed, the chunks in flight dropped, nothing started again
    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address,
                      "--chunk-size", "2", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{7 - saved} graded now, {saved} already in the store" in again.stdout
    _same_outputs(out, local)
    _nothing_grading(cluster)


def test_a_worker_without_bubblewrap_is_never_given_work(cluster, tmp_path):
    bare = cluster.add_bare_worker("bare")
    try:
        cluster.wait_for(3)
        folder = _class(tmp_path / "class")
        for extra in list(folder.iterdir())[2:]:
            extra.unlink()
        out = tmp_path / "out"
        p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "--scheduler", cluster.address,
                      "--chunk-size", "1", timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"cluster: 2 Dask workers at {cluster.address}, 2 grading processes, 2 with warm slots" in p.stdout
        refused = [line for line in p.stdout.splitlines() if "never given work" in line]
        assert len(refused) == 1 and refused[0].startswith("  tcp://127.0.0.1:"), p.stdout
        assert ("never given work: no working bubblewrap (bubblewrap is installed but cannot create its namespaces "
                "here (bwrap: setting up uid map: Permission denied)): install it there (docs/dask.md), or pass "
                "--allow-unsandboxed-workers to grade there without it") in refused[0]
        assert not (cluster.folder / "bare.graded.log").exists()  # it graded nothing
        assert "graded now" in p.stdout and ",graded" in (out / "gradebook.csv").read_text()
    finally:
        cluster.stop(bare)
        cluster.processes.remove(bare)
    cluster.wait_for(2)


@pytest.fixture
def bare_cluster(tmp_path_factory):
    """A scheduler whose only worker has no working bubblewrap."""
    c = Cluster(tmp_path_factory.mktemp("bare"), workers=0)
    c.workers = [c.add_bare_worker("bare")]
    c.wait_for(1)
    yield c
    c.close()
    deadline = time.monotonic() + 20
    while c.ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.ours() == [], "processes of the test's cluster were left behind"


@pytest.mark.skipif(os.geteuid() != 0, reason="without bubblewrap, only a grader running as root takes the "
                    "network away from a submission (as such a worker is then refused even when allowed)")
def test_an_unsandboxed_worker_is_refused_unless_allowed_and_then_reaches_nothing(bare_cluster, tmp_path):
    listener = Listener()
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "mallory.py").write_text((ROOT / "tests" / "hostile" / "tcp_connect.py").read_text()
                                       .replace("PORT", str(listener.port)))
    shutil.copy(ROOT / "tests" / "cross" / "victim.py", folder / "victor.py")
    course = ROOT / "tests" / "fixtures" / "course"
    args = ["batch", str(folder), "--root", str(course), "--assignment", "toy", "--scheduler", bare_cluster.address]
    try:
        refused = run_grade(*args, "--out", str(tmp_path / "refused"), timeout=300)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"no Dask worker at {bare_cluster.address} may grade, so the batch is refused" in refused.stderr
        assert "tcp://127.0.0.1:" in refused.stderr and "--allow-unsandboxed-workers" in refused.stderr
        assert not (tmp_path / "refused" / "gradebook.csv").exists()

        out = tmp_path / "out"
        p = run_grade(*args, "--out", str(out), "--allow-unsandboxed-workers", timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        listener.close()
    assert listener.connections == 0 and listener.received == [], "a submission reached 127.0.0.1"
    assert "no working bubblewrap there: its submissions ran in a plain subprocess with resource limits and no " \
           "network, NOT sandboxed" in p.stdout
    rows = {r.split(",")[0]: r.split(",")[2:5] for r in (out / "gradebook.csv").read_text().splitlines()[1:]}
    assert rows == {"mallory": ["4", "4", "graded"], "victor": ["3", "4", "graded"]}
    with sqlite3.connect(out / "grades.sqlite") as db:
        isolation = {json.loads(r)["isolation"] for (r,) in db.execute("SELECT report FROM results")}
    assert len(isolation) == 1
    line = isolation.pop()
    assert "NOT sandboxed (bubblewrap is installed but cannot create its namespaces here" in line
    assert ("but not the course's files or the cache (closed to its user); it had no network "
            "(a network namespace of its own)") in line
    assert sorted((bare_cluster.folder / "bare.graded.log").read_text().split()) == ["mallory.py", "victor.py"]


def test_the_scheduler_dying_mid_batch_is_exit_2_and_keeps_what_was_graded(tmp_path_factory, tmp_path):
    c = Cluster(tmp_path_factory.mktemp("doomed"), workers=1, death_timeout=5)
    try:
        folder = tmp_path / "class"
        folder.mkdir()
        shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", folder / "alice.ipynb")
        (folder / "zed.py").write_text(_slow().replace("_t.sleep(1)", "_t.sleep(25)"))
        out = tmp_path / "out"
        command = [sys.executable, "-m", "grader", "batch", str(folder), "--assignment", "mha", "--out", str(out),
                   "--scheduler", c.address, "--chunk-size", "1"]
        batch = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "COLUMNS": "160"}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while not (_stored(out) and "zed.py" in (c.graded_log.read_text() if c.graded_log.exists() else "")):
                assert batch.poll() is None and time.monotonic() < deadline, "zed was never caught in flight"
                time.sleep(0.05)
            os.killpg(c.scheduler.pid, signal.SIGKILL)  # the scheduler dies, zed in flight
            started = time.monotonic()
            stdout, stderr = batch.communicate(timeout=120)
            took = time.monotonic() - started
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait()
        assert batch.returncode == 2, stdout + stderr
        assert (f"grade: error: the Dask scheduler at {c.address} went away; what was graded is kept: start it again "
                "and run the same command") in stderr
        assert "Traceback" not in stderr, stderr
        assert took < 30, f"the batch took {took:.0f} s to stop"
        with sqlite3.connect(out / "grades.sqlite") as db:
            assert [r for (r,) in db.execute("SELECT student_id FROM results")] == ["alice"]
        deadline = time.monotonic() + 60  # the worker ends by itself (--death-timeout), its pool with it
        while c.ours() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in c.ours() if p.pid != c.scheduler.pid] == [], "the lost batch left processes behind"
    finally:
        c.close()
