"""grade batch --scheduler: a real `dask scheduler` and `dask worker` processes on loopback, started here.

The class is graded on the cluster into the same gradebook as the local pool gives; resume,
and --regrade work as locally; a worker killed mid-run costs nothing; a submission that
takes its worker down every time is found (the chunk split down to it) and recorded as an error;
workers that differ from this machine are refused.
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
    """A scheduler and workers, each `dask` process in its own session; every process this test
    started (and all they started) carries GRADER_RUN_TAG=tag, so only those are counted."""

    def __init__(self, folder: Path):
        self.folder = folder
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
        self.workers = [self.add_worker(f"w{i}", KILL_SWITCH) for i in (1, 2)]
        self.wait_for(2)

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.folder, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, preexec_fn=_own_session_ending_with_us)
        self.processes.append(p)
        return p

    def add_worker(self, name: str, preload: Path) -> subprocess.Popen:
        return self._start(["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                            "--death-timeout", "20",  # a worker whose scheduler is gone ends by itself
                            "--name", name, "--local-directory", str(self.folder / name), "--preload", str(preload)],
                           name)

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
