"""grade batch --scheduler, its parts without a cluster: Dask imported only for --scheduler, the worker
check in words, a mismatched or unsandboxed worker's plugin never offering work, the chunks, what a worker
sends back, a lost scheduler in words; and the grading pool a worker runs (the local one), closed
mid-grade, whether by Pool.close or by Ctrl-C on a local batch, leaves no process behind."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, SUBMISSIONS

pytest.importorskip("distributed")

from grader.batch import cluster  # noqa: E402
from grader.batch.workers import STOP_SECONDS, Graded, Pool, failed  # noqa: E402
from grader.config import GradeConfig, Limits  # noqa: E402

COURSE = ROOT / "tests" / "fixtures" / "course"
VICTIM = ROOT / "tests" / "cross" / "victim.py"  # the toy assignment's 3/4 submission


def test_without_scheduler_nothing_of_dask_is_imported(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "bob.py").write_text((SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py").read_text())
    code = (
        "import sys\n"
        "from grader.cli import main\n"
        f"try:\n    main(['batch', {str(folder)!r}, '-a', 'mha', '--out', {str(tmp_path / 'out')!r}, '-j', '1'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
        "assert 'grader.batch.cluster' not in sys.modules\n"
        "print('clean')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0 and "clean" in p.stdout, p.stdout + p.stderr


def test_scheduler_without_dask_installed_is_a_usage_error(monkeypatch):
    from grader.batch import run
    from grader.errors import UsageError

    import grader.batch

    monkeypatch.delitem(sys.modules, "grader.batch.cluster")
    monkeypatch.delattr(grader.batch, "cluster")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError(name='distributed')
    with pytest.raises(UsageError, match=r"pip install 'grader\[dask\]'"):
        run._cluster()


OURS = {"python": "3.11", "torch": "2.13.0", "grader": "0.1.0 (abc)", "sandbox": "bwrap"}


def test_mismatches_in_words():
    assert cluster.mismatches(OURS, OURS) == []
    assert cluster.mismatches(OURS, {**OURS, "sandbox": "none"}) == []  # not a mismatch: see refusal
    assert cluster.mismatches(OURS, {**OURS, "torch": "2.12.0", "grader": "0.1.0 (def)"}) == [
        "torch 2.12.0 (this machine: 2.13.0)", "grader 0.1.0 (def) (this machine: 0.1.0 (abc))"]
    refused = cluster.mismatches(OURS, {**OURS, "sandbox": "refused (bubblewrap is missing)"})
    assert refused == ["sandbox refused (bubblewrap is missing)"]
    assert cluster.mismatches(OURS, {}) == ["python ? (this machine: 3.11)", "torch ? (this machine: 2.13.0)",
                                            "grader ? (this machine: 0.1.0 (abc))"]


def test_the_grader_identity_covers_its_source():
    ident = cluster.grader_identity()
    assert ident.split(" ")[1].startswith("(") and len(ident.split("(")[1].rstrip(")")) == 12


class _FakeState:
    nthreads = 2


class _FakeWorker:
    def __init__(self, folder: Path):
        self.local_directory = str(folder)
        self.state = _FakeState()
        self.offered: list[dict] = []

    async def set_resources(self, **resources):
        self.offered.append(resources)


def test_a_worker_unlike_the_client_never_offers_work(tmp_path):
    plugin = cluster.CoursePlugin("grader-batch-x", b"", GradeConfig(), True, {**cluster.environment("auto"),
                                  "torch": "1.0.0"}, "/course")
    worker = _FakeWorker(tmp_path)
    asyncio.run(plugin.setup(worker))
    assert plugin.pool is None and worker.offered == [] and not (tmp_path / "grader-batch-x").exists()
    asyncio.run(plugin.teardown(worker))  # nothing to stop
    assert worker.offered == []


def test_the_plugin_travels_without_a_pool(tmp_path):
    import pickle

    plugin = cluster.CoursePlugin("n", b"bundle", GradeConfig(), True, OURS, "/course")
    plugin.pool, plugin.folder = object(), tmp_path
    copy = pickle.loads(pickle.dumps(plugin))
    assert copy.pool is None and copy.folder is None and copy.bundle == b"bundle"


def test_a_file_over_the_readers_cap_travels_as_its_size(tmp_path, monkeypatch):
    big = tmp_path / "big.py"
    with open(big, "wb") as f:
        f.truncate(300 * 1024)  # over the 256 KiB a .py may have
    item = cluster._item(3, big, "/class/big.py")
    assert item.data is None and item.size == 300 * 1024 and item.shown == "/class/big.py"
    small = tmp_path / "small.py"
    small.write_text("x = 1\n")
    assert cluster._item(0, small, "/class/small.py").data == b"x = 1\n"
    gone = cluster._item(1, tmp_path / "gone.py", "/class/gone.py")
    assert gone.size == -1 and "gone.py" in gone.error and gone.shown == "/class/gone.py"


def test_what_a_worker_sends_back_is_checked():
    ok = failed("stand-in")
    chunk = [(4, Path("a.py")), (5, Path("b.py"))]
    assert cluster._checked([(4, ok), (5, ok)], chunk) == [(4, ok), (5, ok)]
    got = cluster._checked([(4, ok), (9, ok), ("x", ok), (5, "not graded")], chunk)
    assert got[0] == (4, ok) and got[1][0] == 5 and isinstance(got[1][1], Graded)
    assert got[1][1].entry.status == "internal" and "no result" in got[1][1].entry.message
    assert all(g.entry.status == "internal" for _, g in cluster._checked(None, chunk))


BARE = {**OURS, "sandbox": "none", "unsandboxed": "bubblewrap is not installed", "network": ""}


def test_a_worker_without_bubblewrap_is_refused_unless_allowed_and_offline():
    assert cluster.refusal(OURS, False) == "" and cluster.refusal(OURS, True) == ""
    refused = cluster.refusal(BARE, False)
    assert refused.startswith("no working bubblewrap (bubblewrap is not installed)")
    assert "--allow-unsandboxed-workers" in refused
    assert cluster.refusal(BARE, True) == ""  # allowed, and its submissions get no network
    online = {**BARE, "network": "the grader does not run as root"}
    assert "would keep the network (the grader does not run as root)" in cluster.refusal(online, True)
    assert "--allow-unsandboxed-workers" in cluster.refusal(online, False)


def test_an_unsandboxed_worker_never_offers_work_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "environment", lambda requested: dict(BARE, network="not root"))
    for allowed in (False, True):  # allowed or not: its submissions would keep the network
        plugin = cluster.CoursePlugin("grader-batch-x", b"", GradeConfig(), True, OURS, "/course", allowed)
        worker = _FakeWorker(tmp_path)
        asyncio.run(plugin.setup(worker))
        assert plugin.pool is None and worker.offered == [] and not (tmp_path / "grader-batch-x").exists()


class _LostClient:
    status = "connecting"  # what a Dask client is once its scheduler's connection is lost


def test_a_lost_scheduler_is_said_in_one_way():
    from distributed.client import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError

    c = cluster.Cluster.__new__(cluster.Cluster)
    c.address, c.client, c._gone = "tcp://10.0.0.1:8786", _LostClient(), False
    lost = FuturesCancelledError([CancelledFuturesGroup([FutureCancelledError("k", "scheduler-connection-lost")],
                                                        "scheduler-connection-lost")])
    for error in (lost, OSError("Timed out trying to connect"), RuntimeError("ConnectionPool is closed")):
        with pytest.raises(cluster.ClusterError) as caught:
            with c._talking():
                raise error
        assert str(caught.value) == cluster.SCHEDULER_GONE.format(address="tcp://10.0.0.1:8786")
        assert str(caught.value).startswith("the Dask scheduler at tcp://10.0.0.1:8786 went away; what was graded "
                                            "is kept: start it again and run the same command")
    assert c._gone
    _LostClient.status = "running"
    try:
        with pytest.raises(ValueError):  # anything else is not the scheduler's going
            with c._talking():
                raise ValueError("a bug")
    finally:
        _LostClient.status = "connecting"


# --------------------------------------------------------------------------- the pool, closed mid-grade


def _slow_toy(folder: Path, seconds: int = 60) -> Path:
    """The toy submission whose class body sleeps: mid-run long enough to be caught there."""
    path = folder / "slow.py"
    sleeping = f"class Doubler(nn.Module):\n    import time as _t\n    _t.sleep({seconds})\n"
    path.write_text(VICTIM.read_text().replace("class Doubler(nn.Module):", sleeping, 1))
    return path


def _tagged(tag: str) -> list[int]:
    """Live processes of this test: GRADER_RUN_TAG=tag in their environment (the grading processes), or a
    worker token led by it (the sandboxed workers, whose environment is otherwise clean)."""
    needles = (f"GRADER_RUN_TAG={tag}\0".encode(), f"GRADER_WORKER_TOKEN={tag}.".encode())
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read() + b"\0"
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and any(n in env for n in needles):
            found.append(int(pid))
    return found


def _none_left(tag: str, seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _tagged(tag)


def _wait_for_a_worker(tag: str, seconds: float = 60) -> None:
    needle = f"GRADER_WORKER_TOKEN={tag}.".encode()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in _tagged(tag):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle in f.read():
                        return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("no submission was ever caught running")


def test_closing_the_pool_mid_grade_ends_every_process_it_started(tmp_path, monkeypatch):
    """As a Dask worker's plugin does when its batch ends or is interrupted: one grade in flight, another
    waiting for the process. No replacement is started, the grade in flight is dropped, nothing is left."""
    tag = f"pool{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("GRADER_RUN_TAG", tag)
    slow = _slow_toy(tmp_path)
    config = GradeConfig(root=COURSE, assignment="toy", sandbox="none", timeout=120, case_timeout=90)
    pool = Pool(1, False, Limits(), ())
    results: dict[str, Graded] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, pool.grade_one(slow, config)))
               for k in ("first", "second")]
    for t in threads:
        t.start()
    try:
        _wait_for_a_worker(tag)
        start = time.monotonic()
        pool.close()
        closing = time.monotonic() - start
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert closing < STOP_SECONDS, f"close took {closing:.1f} s: it waited for the grade in flight"
        assert {k: g.entry.status for k, g in results.items()} == {"first": "internal", "second": "internal"}
        assert _none_left(tag) == [], "the pool left processes behind"
        assert pool.grade_one(slow, config).entry.status == "internal"  # closed: nothing is started again
        assert _tagged(tag) == []
    finally:
        pool.close()


def test_ctrl_c_on_a_local_batch_saves_what_was_graded_and_leaves_nothing(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "alice.py").write_text(VICTIM.read_text())
    _slow_toy(folder).rename(folder / "zed.py")
    out, tag = tmp_path / "out", f"ctrlc{uuid.uuid4().hex[:10]}"
    batch = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(folder), "--root", str(COURSE), "-a", "toy",
                              "--out", str(out), "-j", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "GRADER_RUN_TAG": tag, "GRADER_SANDBOX": "none"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "feedback").is_dir() and batch.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # alice's feedback is written: zed is next
        _wait_for_a_worker(tag)
        batch.send_signal(signal.SIGINT)
        stdout, stderr = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert (f"grade: interrupted: 1 submission graded by this run is saved in {out / 'grades.sqlite'} "
            "(1 of 2 in the store); run the same command again to grade the rest") in stderr
    assert _none_left(tag) == [], "the interrupted batch left processes behind"
