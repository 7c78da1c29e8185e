"""Running a worker process: start it early, send its job, collect its records, clean up.

The worker is started before the submission is even parsed, so its ``import torch``
overlaps with the grader's own work. Records arrive as JSON lines on a dedicated pipe
(not stdout/stderr, which only go to capped log files). On a timeout the whole process
group is killed, so nothing the submission started outlives grading.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How much of the worker's stdout/stderr is kept for the report.
LOG_TAIL_BYTES = 4000
ISOLATION = "subprocess (separate process, wall-clock timeout; no sandbox)"


@dataclass
class WorkerRun:
    """Everything a worker reported, captured as plain data, whatever happened to it."""

    exec_errors: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a failure of the worker's own code (a grader bug), with its traceback
    internal: str | None = None
    #: why the worker stopped before finishing (timeout, crash), in plain words
    stopped: str | None = None
    #: the call that was running when it stopped ("" while running top-level statements)
    running: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    finished: bool = False


class Worker:
    """A started worker process waiting for its job; use as a context manager."""

    def __init__(self, workdir: Path | None = None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="grader-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.out_dir = self.workdir / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.workdir / "run"
        self.run_dir.mkdir(exist_ok=True)
        self._stdout = open(self.workdir / "stdout.log", "w+b")
        self._stderr = open(self.workdir / "stderr.log", "w+b")
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.worker", str(write_fd)],
            stdin=subprocess.PIPE, stdout=self._stdout, stderr=self._stderr,
            pass_fds=(write_fd,), cwd=self.run_dir, env=env, start_new_session=True,
        )
        os.close(write_fd)
        self._channel = os.fdopen(read_fd, "rb", buffering=0)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, job: dict[str, Any], timeout: float, step_timeout: float | None = None) -> WorkerRun:
        """Send ``job`` and collect records until the worker finishes or ``timeout`` passes.

        ``step_timeout`` bounds each step (the top-level statements, then each call): a
        step that sends nothing for that long is a timeout of that step.
        """
        job = dict(job, out_dir=str(self.out_dir))
        result = WorkerRun()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(job).encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died already; the read loop below reports how
        deadline = time.perf_counter() + timeout
        self._timeout = timeout
        self._read_records(result, deadline, step_timeout, [c["id"] for c in job["calls"]])
        if not result.finished and result.stopped is None:
            code = self._wait(1.0)
            result.stopped = describe_exit(code)
        result.duration = time.perf_counter() - self._started
        self.kill()
        result.stdout = self._tail(self._stdout)
        result.stderr = self._tail(self._stderr)
        return result

    def _read_records(self, result: WorkerRun, deadline: float, step_timeout: float | None,
                      call_ids: list[str]) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._channel, selectors.EVENT_READ)
        buffer = b""
        pending = list(call_ids)
        exec_done = False
        step_started = time.perf_counter()
        try:
            while True:
                now = time.perf_counter()
                left = deadline - now
                if step_timeout is not None:
                    step_left = step_started + step_timeout - now
                    if step_left <= 0:
                        result.stopped = f"timed out after {time_words(step_timeout)}"
                        break
                    left = min(left, step_left) if left > 0 else left
                if deadline - now <= 0:
                    result.stopped = (f"ran out of time (the limit for the whole submission is "
                                      f"{time_words(self._timeout)})")
                    break
                if not sel.select(timeout=min(left, 0.5)):
                    continue
                chunk = self._channel.read(65536)
                if not chunk:
                    break  # worker closed the channel (exited or crashed)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        record = json.loads(line)
                        kind = record.get("kind")
                    except (ValueError, AttributeError):
                        continue  # not ours: only well-formed records count

                    step_started = time.perf_counter()
                    if kind == "exec":
                        result.exec_errors = record["errors"]
                        exec_done = True
                    elif kind == "call":
                        result.calls[record["id"]] = record
                        if record["id"] in pending:
                            pending.remove(record["id"])
                    elif kind == "internal":
                        result.internal = record["traceback"]
                    elif kind == "done":
                        result.finished = True
                if result.finished or result.internal:
                    break
        finally:
            sel.close()
            result.running = (pending[0] if pending else None) if exec_done else ""

    def _wait(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Stop the worker and every process it started (its whole process group)."""
        if self.proc.poll() is None and self._wait(0.2) is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            if self._wait(0.5) is None:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self._wait(5.0)
        _signal_group(self.proc.pid, signal.SIGKILL)  # children left in the group

    def close(self) -> None:
        """Kill what is left and remove the working folder."""
        self.kill()
        for f in (self._channel, self._stdout, self._stderr):
            f.close()
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()

    @staticmethod
    def _tail(f: Any) -> str:
        f.flush()
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        text = f.read().decode("utf-8", "replace")
        return ("…" + text) if size > LOG_TAIL_BYTES else text


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int | None) -> str:
    """Plain words for how a worker process ended."""
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (out of memory?)" if name == "SIGKILL" else ""
        return f"crashed ({name}){extra}"
    return f"exited early with code {code} (sys.exit or os._exit in the submission?)"


def time_words(seconds: float) -> str:
    """'61 s' style."""
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
