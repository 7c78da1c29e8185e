"""Running a worker process: start it early, send its job, collect its records, clean up.

The worker is started before the submission is even parsed, so its ``import torch``
overlaps the grader's own work. Records arrive as JSON lines on a dedicated pipe;
stdout and stderr are drained separately and only their head and tail are kept, so
printed text can neither fake a result nor fill memory. Everything a worker sends is
data to check, never trusted: tensor files must be the worker's own, named as the
protocol says, and no larger than the limit. On a timeout the whole process group is
killed (SIGTERM, then SIGKILL after a short grace), and so is any process that
escaped the group but still carries the worker's token.
"""
from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.execute.sandbox import Launch, Limits, launch

#: The longest record line accepted on the channel.
MAX_RECORD_BYTES = 1 << 20
#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE = 0.5
#: Seconds a worker may take to start (import torch, read its job) before it counts as broken.
STARTUP_TIMEOUT = 120.0
_OUTPUT_FILE = re.compile(r"^\d+\.safetensors$")
#: Environment variable that tags a worker and everything it starts.
TOKEN_VAR = "GRADER_WORKER_TOKEN"


@dataclass
class WorkerRun:
    """Everything a worker reported, captured as plain data, whatever happened to it."""

    exec_errors: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a failure of the worker's own code (a grader bug), with its traceback; only trusted
    #: when it came before any submitted code ran (after that, the submission could fake it)
    internal: str | None = None
    #: why the worker stopped before finishing (timeout, crash), in plain words
    stopped: str | None = None
    #: the call that was running when it stopped ("" while running top-level statements)
    running: str | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    finished: bool = False
    #: the worker started and read its job (before that, nothing of the submission had run)
    started: bool = False


class _Capped:
    """Keeps the head and tail of a stream and counts what it dropped in between."""

    def __init__(self, limit: int):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.half:
            self.dropped += len(self.tail) - self.half
            del self.tail[:len(self.tail) - self.half]

    def text(self) -> str:
        middle = f"\n[… {self.dropped:,} bytes not kept …]\n" if self.dropped else ""
        return (bytes(self.head).decode("utf-8", "replace") + middle + bytes(self.tail).decode("utf-8", "replace"))


class Worker:
    """A started worker process waiting for its job; use as a context manager.

    ``mode`` is 'bwrap' or 'none' (see ``grader.execute.sandbox``); ``shared`` are read-only
    folders the worker may read (the case inputs); ``hide`` are folders it must never
    see (the course, the reference cache), masked if they sit inside a mounted tree.
    """

    def __init__(self, workdir: Path | None = None, mode: str = "none", limits: Limits | None = None,
                 shared: tuple[Path, ...] = (), hide: tuple[Path, ...] = ()):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="grader-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.limits = limits or Limits()
        self.mode = mode
        self.out_dir = self.workdir / "out"
        self.run_dir = self.workdir / "run"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        read_fd, write_fd = os.pipe()
        self.launch: Launch = launch(mode, self.workdir, list(shared), write_fd, self.limits, list(hide))
        self.token = uuid.uuid4().hex
        self.launch.env[TOKEN_VAR] = self.token
        self._started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(write_fd,), cwd=self.launch.cwd, env=self.launch.env, start_new_session=True,
            preexec_fn=self.launch.preexec,
        )
        os.close(write_fd)
        self._channel = os.fdopen(read_fd, "rb", buffering=0)
        self._out = _Capped(self.limits.output_kb << 10)
        self._err = _Capped(self.limits.output_kb << 10)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, job: dict[str, Any], timeout: float, step_timeout: float | None = None) -> WorkerRun:
        """Send ``job`` and collect records until the worker finishes or ``timeout`` passes.

        ``step_timeout`` bounds each step (the top-level statements, then each call): a
        step that sends nothing for that long is a timeout of that step.
        """
        self._nonce = uuid.uuid4().hex
        job = dict(job, out_dir=self.launch.inside(self.out_dir), nonce=self._nonce)
        if job.get("inputs_file"):
            job["inputs_file"] = self.launch.inside(Path(job["inputs_file"]))
        result = WorkerRun()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(job).encode())
            self.proc.stdin.close()  # the student's input() then sees end-of-file
        except (BrokenPipeError, OSError):
            pass  # it died already; the read loop below reports how
        self._timeout = timeout
        self._read_records(result, time.perf_counter() + timeout, step_timeout, [c["id"] for c in job["calls"]])
        if not result.finished and result.stopped is None:
            code = self._wait(1.0)
            if self.mode == "bwrap" and code is not None and code > 128:
                code = 128 - code  # bwrap exits with 128 + the signal that killed its child
            result.stopped = describe_exit(code)
        result.duration = time.perf_counter() - self._started
        self.kill()
        self._drain()
        result.stdout, result.stderr = self._out.text(), self._err.text()
        return result

    def output_file(self, record: dict[str, Any]) -> Path | None:
        """The host path of a record's tensor file, if it is a legitimate one of this worker's."""
        name = Path(str(record.get("file") or "")).name
        if not _OUTPUT_FILE.match(name):
            return None
        path = self.out_dir / name
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > (self.limits.tensor_mb << 20):
                return None
        except OSError:
            return None
        return path

    def _read_records(self, result: WorkerRun, deadline: float, step_timeout: float | None,
                      call_ids: list[str]) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._channel, selectors.EVENT_READ, "channel")
        assert self.proc.stdout is not None and self.proc.stderr is not None
        sel.register(self.proc.stdout, selectors.EVENT_READ, self._out)
        sel.register(self.proc.stderr, selectors.EVENT_READ, self._err)
        buffer = b""
        pending = list(call_ids)
        exec_done = False
        ready = False
        step_started = time.perf_counter()
        try:
            while True:
                now = time.perf_counter()
                left = deadline - now
                if left <= 0:
                    result.stopped = f"ran out of time (the limit for the whole submission is {time_words(self._timeout)})"
                    break
                if not ready:  # the worker is still starting: the grader's time, not the submission's
                    if now - step_started > STARTUP_TIMEOUT:
                        result.stopped = f"did not start within {time_words(STARTUP_TIMEOUT)}"
                        break
                elif step_timeout is not None:
                    step_left = step_started + step_timeout - now
                    if step_left <= 0:
                        result.stopped = f"timed out after {time_words(step_timeout)}"
                        break
                    left = min(left, step_left)
                channel_closed = False
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if key.data != "channel":
                        if chunk:
                            key.data.add(chunk)
                        else:
                            sel.unregister(key.fileobj)
                        continue
                    if not chunk:
                        channel_closed = True
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) > MAX_RECORD_BYTES:
                        buffer = b""  # not a record of ours
                    for line in lines:
                        kind = self._take(line, result, pending, self._nonce)
                        if kind:
                            step_started = time.perf_counter()
                        if kind == "ready":
                            ready = result.started = True
                        if kind == "exec":
                            exec_done = True
                        if kind == "internal" and exec_done:
                            result.internal = None  # submitted code ran: not a trustworthy report
                            result.stopped = "broke the grader's worker process"
                            break
                if channel_closed or result.finished or result.internal or result.stopped:
                    break
        finally:
            sel.close()
            result.running = (pending[0] if pending else None) if exec_done else ""

    @staticmethod
    def _take(line: bytes, result: WorkerRun, pending: list[str], nonce: str) -> str | None:
        """Apply one well-formed record of this job; anything else on the channel is ignored."""
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict) or record.get("nonce") != nonce:
            return None
        kind = record.get("kind")
        if kind == "exec" and isinstance(record.get("errors"), list):
            result.exec_errors = [e for e in record["errors"] if isinstance(e, dict)]
        elif kind == "call" and record.get("id") in pending:
            result.calls[record["id"]] = record
            pending.remove(record["id"])
        elif kind == "internal":
            result.internal = str(record.get("traceback"))
        elif kind == "done":
            result.finished = True
        elif kind != "ready":
            return None
        return kind

    def _drain(self, seconds: float = 0.5) -> None:
        """Read what is left in stdout/stderr after the worker is gone (bounded in time)."""
        sel = selectors.DefaultSelector()
        for f, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            if f is not None and not f.closed:
                sel.register(f, selectors.EVENT_READ, sink)
        end = time.perf_counter() + seconds
        try:
            while sel.get_map() and time.perf_counter() < end:
                for key, _ in sel.select(timeout=0.05):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if chunk:
                        key.data.add(chunk)
                    else:
                        sel.unregister(key.fileobj)
        finally:
            sel.close()

    def _wait(self, seconds: float) -> int | None:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Stop the worker and every process it started (its group, and any orphans)."""
        if self.proc.poll() is None and self._wait(0.05) is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            if self._wait(KILL_GRACE) is None:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self._wait(5.0)
        _signal_group(self.proc.pid, signal.SIGKILL)  # children left in the group
        if self.mode == "none":
            _kill_tagged(self.token)

    def close(self) -> None:
        """Kill what is left and remove the working folder."""
        self.kill()
        for f in (self._channel, self.proc.stdout, self.proc.stderr, self.proc.stdin):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_tagged(token: str) -> None:
    """Kill every process carrying this worker's token in its environment (Linux).

    A plain subprocess's children may leave its process group (setsid, double fork);
    they still inherit the token, so they are found and killed here.
    """
    if not sys.platform.startswith("linux"):
        return
    needle = f"{TOKEN_VAR}={token}".encode()
    me = os.getpid()
    for _ in range(5):
        found = False
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            if pid == me:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    tagged = needle in f.read().split(b"\0")
            except OSError:
                continue
            if tagged:
                found = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not found:
            return
        time.sleep(0.05)


def describe_exit(code: int | None) -> str:
    """Plain words for how a worker process ended."""
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = {"SIGKILL": " (out of memory?)", "SIGXCPU": " (CPU time limit)",
                 "SIGXFSZ": " (file size limit)", "SIGSEGV": " (e.g. runaway recursion)"}.get(name, "")
        return f"crashed ({name}){extra}"
    return f"exited early with code {code} (sys.exit or os._exit in the submission?)"


def time_words(seconds: float) -> str:
    """'61 s' style."""
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
