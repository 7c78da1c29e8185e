"""Hostile submissions: whatever they do, the score is honest, the grader intact, nothing left.

Each file in tests/hostile/ is graded against the toy assignment (tests/fixtures/course) with
tight limits, in every isolation mode its entry in expected.toml names. Besides its score
and errors, every run must: exit 0 or 1 within its time, leave no process and no file behind,
change no project file, and send nothing to a TCP listener the test starts on 127.0.0.1.

Only this run's processes are counted (other graders may run on the same host): the grade
command gets a unique ``GRADER_RUN_TAG`` (every worker token starts with it) and the
submission's own children carry a unique marker in their command line.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import tomllib
import uuid

import pytest

from conftest import ROOT, require_bwrap, run_grade

HOSTILE = ROOT / "tests" / "hostile"
COURSE = ROOT / "tests" / "fixtures" / "course"
EXPECTED = tomllib.loads((HOSTILE / "expected.toml").read_text(encoding="utf-8"))
LIMITS = ["--case-timeout", "3", "--timeout", "60", "--memory-mb", "1500", "--max-processes", "32"]
MAX_SECONDS = 45


def _params():
    for name, spec in sorted(EXPECTED.items()):
        for mode in spec.get("modes", ["bwrap", "none"]):
            yield pytest.param(name, mode, id=f"{name}-{mode}")


def _project_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & {".git", "__pycache__", ".pytest_cache"} and ".egg-info" not in str(path):
            h.update(str(path).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def tagged_processes(tag: str) -> list[int]:
    """Processes of this run: a worker token that starts with ``tag``, or ``tag`` in the command line."""
    token, marker = f"GRADER_WORKER_TOKEN={tag}.".encode(), tag.encode()
    left = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            env = b""
        if token in env or marker in cmd:
            left.append(int(pid))
    return left


def expectation(name: str, mode: str) -> dict:
    """The entry for ``name``, with its ``[name.none]`` or ``[name.bwrap]`` overrides for ``mode``."""
    spec = dict(EXPECTED[name])
    spec.update(spec.pop(mode, {}))
    spec.pop("bwrap" if mode == "none" else "none", None)
    return spec


class Listener:
    """A TCP server on 127.0.0.1 that records every byte it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(4096))
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def digest():
    return _project_digest()


@pytest.mark.parametrize("name, mode", list(_params()))
def test_hostile(tmp_path, digest, name, mode):
    if mode == "bwrap":
        require_bwrap()
    spec = expectation(name, mode)
    if spec.get("needs_root") and os.geteuid() != 0:
        pytest.skip(f"{name} in {mode} mode holds only where the grader runs as root")
    listener = Listener()
    tag = f"hostile{uuid.uuid4().hex[:12]}"
    scratch = tmp_path / "scratch"  # the grader's TMPDIR: its workers' folders live here
    scratch.mkdir()
    submission = tmp_path / name
    submission.write_text((HOSTILE / name).read_text().replace("PORT", str(listener.port)).replace("MARKER", tag))
    try:
        start = time.perf_counter()
        p = run_grade(str(submission), "--root", str(COURSE), "--assignment", "toy", "--sandbox", mode,
                      "--format", "json", *LIMITS, timeout=MAX_SECONDS + 30,
                      env={"GRADER_RUN_TAG": tag, "TMPDIR": str(scratch)})
        elapsed = time.perf_counter() - start
    finally:
        listener.close()
    assert p.returncode in (0, 1), p.stderr[-2000:]
    assert elapsed < MAX_SECONDS
    report = json.loads(p.stdout)
    statuses = {c["case_id"]: c["status"] for c in report["cases"]}
    assert report["score"] == spec["score"], json.dumps(report, indent=1)[:3000]
    assert sorted(k for k, v in statuses.items() if v == "error") == sorted(spec.get("errors", []))
    if spec.get("reason"):
        first = next(c for c in report["cases"] if c["status"] == "error")
        assert spec["reason"] in first["reason"] + " ".join(report["notes"]), first["reason"]
    assert report["isolation"].startswith("bubblewrap" if mode == "bwrap" else "plain subprocess")
    time.sleep(0.2)
    assert tagged_processes(tag) == []
    # the workers' folders are gone, whatever the code wrote in them (as root without a sandbox they
    # may live in /tmp: a worker's own user must reach them)
    assert list(scratch.iterdir()) == [] and not [f for f in os.listdir("/tmp") if f.startswith(f"grader-{tag}")]
    assert not [f for d in ("/tmp", "/dev/shm") for f in os.listdir(d) if f.startswith("fill-")]
    assert listener.connections == 0 and listener.received == []
    assert _project_digest() == digest
