"""grade batch --scheduler, its parts without a cluster: Dask imported only for --scheduler, the worker
check in words, a mismatched worker's plugin never offering work, the chunks, and what a worker sends back."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SUBMISSIONS

pytest.importorskip("distributed")

from grader.batch import cluster  # noqa: E402
from grader.batch.workers import Graded, failed  # noqa: E402
from grader.config import GradeConfig  # noqa: E402


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
    assert cluster.mismatches(OURS, {**OURS, "sandbox": "none"}) == []  # the fallback is stated, not refused
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


def test_chunks_by_count_and_bytes(tmp_path, monkeypatch):
    files = []
    for i, size in enumerate([10, 10, 10, 50, 10]):
        p = tmp_path / f"s{i}.py"
        p.write_bytes(b"x" * size)
        files.append((i, p))
    assert [[i for i, _ in c] for c in cluster._chunks(files, 4, 2)] == [[0, 1], [2, 3], [4]]
    monkeypatch.setattr(cluster, "MAX_CHUNK_BYTES", 55)
    assert [[i for i, _ in c] for c in cluster._chunks(files, 1, 16)] == [[0, 1, 2], [3], [4]]


def test_chunks_shrink_towards_the_end(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("x = 1\n")
    sizes = [len(c) for c in cluster._chunks([(i, path) for i in range(1000)], 4)]
    assert sum(sizes) == 1000 and sizes[0] == cluster.MAX_CHUNK and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)
    assert [len(c) for c in cluster._chunks([(i, path) for i in range(6)], 2)] == [1] * 6


def test_a_file_over_the_readers_cap_travels_as_its_size(tmp_path, monkeypatch):
    big = tmp_path / "big.py"
    with open(big, "wb") as f:
        f.truncate(300 * 1024)  # over the 256 KiB a .py may have
    item = cluster._item(3, big)
    assert item.data is None and item.size == 300 * 1024 and item.shown == str(big)
    small = tmp_path / "small.py"
    small.write_text("x = 1\n")
    assert cluster._item(0, small).data == b"x = 1\n"
    gone = cluster._item(1, tmp_path / "gone.py")
    assert gone.size == -1 and "gone.py" in gone.shown


def test_what_a_worker_sends_back_is_checked():
    ok = failed("stand-in")
    chunk = [(4, Path("a.py")), (5, Path("b.py"))]
    assert cluster._checked([(4, ok), (5, ok)], chunk) == [(4, ok), (5, ok)]
    got = cluster._checked([(4, ok), (9, ok), ("x", ok), (5, "not graded")], chunk)
    assert got[0] == (4, ok) and got[1][0] == 5 and isinstance(got[1][1], Graded)
    assert got[1][1].entry.status == "internal" and "no result" in got[1][1].entry.message
    assert all(g.entry.status == "internal" for _, g in cluster._checked(None, chunk))
