"""Running one worker process: start it early, send its job, read its records, stop it, clean up.

The worker is started before the submission is even parsed, so its ``import torch``
overlaps the grader's own work. The job and the case inputs go in on stdin; records come
back on a dedicated pipe and are checked by ``grader.execute.protocol.RecordReader`` (the
one place they are validated); stdout and stderr are drained separately and only their head
and tail are kept, so printed text can neither fake a result nor fill memory.

Until the worker reports ``ready`` nothing of the submission has run, so a failure then is
the grader's own (``WorkerRun.start_failure``, ``WorkerRun.internal``). After it, whatever
happens is the submission's: a timeout, a crash, memory or disk beyond the limits, a
malformed or forged record all end the run with a ``Stop``, and the worker's processes
(all of them: ``grader.execute.process_group.ProcessGroup``) are killed.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from grader.config import Limits
from grader.execute.observation import Observation, observe
from grader.execute.process_group import TOKEN_VAR, ProcessGroup
from grader.execute.protocol import (WORKER_FAILED_EXIT, CallRecord, Done, ErrorInfo, ExecRecord, Internal, Job,
                                     ProtocolViolation, Ready, Record, RecordReader)
from grader.execute.sandbox import launch
from grader.execute.trees import folder_bytes, owned_bytes, remove_owned, remove_tree
from grader.execute.uids import fresh_uid
from grader.model.messages import signal_name
from grader.model.outcomes import (CaseTimeout, Crashed, DiskFull, Exited, OutOfMemory, ProtocolBroken, Stop,
                                     SubmissionTimeout, Unresponsive, WorkerFailed)

#: Seconds a worker may take to start (import torch, read its job) before it counts as broken.
STARTUP_TIMEOUT = 120.0
#: How often the memory (and, without a sandbox, disk) of the worker's processes is measured.
WATCH_INTERVAL = 0.2
#: A cheap memory sum over the limit is confirmed with the precise one (which costs about 4 ms per
#: process) at most this often, and never more than 1/CONFIRM_SHARE of the time.
CONFIRM_INTERVAL = 0.2
CONFIRM_SHARE = 10
#: Without a sandbox, how often the files the worker wrote are measured.
DISK_WATCH_INTERVAL = 0.2
#: Optional tag (letters, digits, '-', '_') put in front of every token, to tell one run's workers from another's.
RUN_TAG_VAR = "GRADER_RUN_TAG"


@dataclass
class WorkerRun:
    """Everything a worker reported, captured as plain data, whatever happened to it."""

    #: the worker reported ``ready`` (before that, nothing of the submission had run)
    started: bool = False
    exec_done: bool = False
    exec_errors: tuple[ErrorInfo, ...] = ()
    observations: dict[str, Observation] = field(default_factory=dict)
    finished: bool = False
    #: why the worker stopped early, once the submission's code had started
    stop: Stop | None = None
    #: the case running when it stopped ("" while running top-level statements)
    running: str | None = None
    #: a failure of the worker's own code before the submission started (a grader bug), with its traceback
    internal: str | None = None
    #: the traceback the worker sent when it failed after the submission started (for the course's own
    #: code, the reference, this is a grader or course bug worth showing; for a student's, it is not trusted)
    late_traceback: str | None = None
    #: why the worker never became ready (it could not start: the grader's environment is at fault)
    start_failure: str | None = None
    stdout: str = ""
    stderr: str = ""
    #: lines on the result channel that were not records (stray writes of the submission)
    ignored: int = 0
    duration: float = 0.0


def _scratch_base() -> str | None:
    """Where a worker running as its own user can reach its folder by absolute path: the usual
    temporary folder if every folder above it lets others through, else /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    for folder in (base, *base.parents):
        try:
            if not folder.stat().st_mode & 0o001:
                return "/tmp"
        except OSError:
            return "/tmp"
    return None


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
        return bytes(self.head).decode("utf-8", "replace") + middle + bytes(self.tail).decode("utf-8", "replace")


class Process:
    """One started worker process as the runner drives it: raw pipe ends and how it ended.

    ``stdin`` (the job goes in), ``stdout`` and ``stderr`` (drained, capped) and ``channel``
    (the records) are the parent's ends, owned here. A cold worker is a ``subprocess.Popen``
    (``_ColdProcess``); a warm one is a child forked by a zygote (``grader.execute.slots``).
    """

    def __init__(self, stdin: int, stdout: int, stderr: int, channel: int):
        self.stdin, self.stdout, self.stderr, self.channel = stdin, stdout, stderr, channel
        self._open = {stdin, stdout, stderr, channel}

    def exit_code(self, timeout: float) -> int | None:
        """Its exit status (negative: the signal that killed it), or None while it still runs."""
        raise NotImplementedError

    def close_fd(self, fd: int) -> None:
        """Close one of the parent's ends (once)."""
        if fd in self._open:
            self._open.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    def release(self) -> None:
        """After its processes are killed: close every end, reap what can be reaped."""
        for fd in list(self._open):
            self.close_fd(fd)


class _ColdProcess(Process):
    """A worker started afresh (``python -m grader.execute.worker``), directly or through bubblewrap."""

    def __init__(self, popen: subprocess.Popen, mode: str, fds: tuple[int, int, int, int]):
        super().__init__(*fds)
        self.popen, self.mode = popen, mode

    def exit_code(self, timeout: float) -> int | None:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.mode == "bwrap" and code > 128:
            return 128 - code  # bwrap exits with 128 + the signal that killed its child
        return code

    def release(self) -> None:
        try:
            self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        super().release()


def pipes(n: int) -> list[tuple[int, int]]:
    """``n`` pipes (read end, write end), all closed again if one cannot be made."""
    made: list[tuple[int, int]] = []
    try:
        for _ in range(n):
            made.append(os.pipe())
    except BaseException:
        for r, w in made:
            os.close(r)
            os.close(w)
        raise
    return made


def new_token() -> str:
    """A fresh worker token, led by ``$GRADER_RUN_TAG`` (letters, digits, '-', '_') when set."""
    tag = run_tag()
    return f"{tag}.{uuid.uuid4().hex}" if tag else uuid.uuid4().hex


def run_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", os.environ.get(RUN_TAG_VAR, ""))[:40]


class Worker:
    """A started worker process waiting for its job; use as a context manager.

    ``Worker(mode, limits, hide)`` starts a cold one: ``mode`` is 'bwrap' or 'none' (see
    ``grader.execute.sandbox``); ``hide`` are folders it must never see (the course, the
    reference cache), masked if they sit inside a mounted tree. A warm slot
    (``grader.execute.slots``) hands out workers forked from its zygote instead, built with
    ``Worker.adopt``; the runner drives both the same way.
    """

    def __init__(self, mode: str, limits: Limits | None = None, hide: tuple[Path, ...] = ()):
        limits = limits or Limits()
        token = new_token()
        uid = fresh_uid()
        tag = run_tag()
        tmp = tempfile.mkdtemp(prefix=f"grader-{tag}-" if tag else "grader-",
                               dir=_scratch_base() if uid is not None and mode == "none" else None)
        run_dir = Path(tmp) / "run"
        run_dir.mkdir(mode=0o700)
        if uid is not None:
            os.chmod(tmp, 0o711)  # the worker's own user may pass through to its folder, not list it
        group = ProcessGroup.create(token, uid, memory_bytes=limits.memory_mb << 20, max_pids=limits.processes)
        (stdin_r, stdin_w), (out_r, out_w), (err_r, err_w), (chan_r, chan_w) = pipes(4)
        spec = launch(mode, run_dir, chan_w, limits, list(hide), uid, group.preexec)
        spec.env[TOKEN_VAR] = token
        started = time.perf_counter()
        try:
            popen = subprocess.Popen(spec.argv, stdin=stdin_r, stdout=out_w, stderr=err_w, pass_fds=(chan_w,),
                                     cwd=spec.cwd, env=spec.env, start_new_session=True, preexec_fn=spec.preexec)
        except BaseException:
            for fd in (stdin_r, stdin_w, out_r, out_w, err_r, err_w, chan_r, chan_w):
                os.close(fd)
            group.close()
            remove_tree(tmp)
            raise
        for fd in (stdin_r, out_w, err_w, chan_w):
            os.close(fd)
        group.attach(popen.pid)

        def cleanup() -> None:
            remove_tree(tmp)
            if uid is not None and mode == "none":
                remove_owned(uid)

        self._setup(mode, limits, group, _ColdProcess(popen, mode, (stdin_w, out_r, err_r, chan_r)), started,
                    run_dir, uid, cleanup)

    @classmethod
    def adopt(cls, mode: str, limits: Limits, group: ProcessGroup, process: Process, started: float,
              cleanup: Callable[[], None], ready: Callable[[], None] = lambda: None) -> "Worker":
        """A worker started elsewhere (a zygote's child, waiting for its job): ``cleanup`` runs once
        it is closed, after its processes are killed. ``ready`` returns once its group holds it (the
        group's cgroup may still be taking it in): the job is sent, and the group used, only after."""
        worker = cls.__new__(cls)
        worker._setup(mode, limits, group, process, started, None, group.uid, cleanup)
        worker._ready = ready
        worker.forked = True
        return worker

    def _setup(self, mode: str, limits: Limits, group: ProcessGroup, process: Process, started: float,
               run_dir: Path | None, uid: int | None, cleanup: Callable[[], None]) -> None:
        self.mode, self.limits, self.group, self.process = mode, limits, group, process
        self.run_dir, self.uid, self._cleanup = run_dir, uid, cleanup
        self._started = started
        #: started by a warm slot's zygote, not afresh
        self.forked = False
        self._out = _Capped(limits.output_kb << 10)
        self._err = _Capped(limits.output_kb << 10)
        self._closed = False
        self._ready: Callable[[], None] = lambda: None  # ``adopt``

    def wait_ready(self) -> None:
        """Return once the worker's group holds it (at once for a worker started here)."""
        self._ready()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, job: Job, inputs: bytes, timeout: float, step_timeout: float | None = None) -> WorkerRun:
        """Send ``job`` and its inputs; collect records until the worker finishes or stops.

        ``timeout`` bounds the whole run once the worker is ready; ``step_timeout`` bounds
        each step (the top-level statements, then each call): a step that sends nothing
        for that long is a timeout of that step.
        """
        self.wait_ready()  # nothing of the job reaches a process that its group does not hold yet
        job = dataclasses.replace(job, inputs_size=len(inputs), max_payload=self.limits.tensor_mb << 20)
        result = WorkerRun()
        reader = RecordReader(job.nonce, self.limits.tensor_mb << 20)
        pending = [c.id for c in job.calls]
        try:
            self._exchange(job.to_line() + inputs, reader, result, pending, timeout, step_timeout,
                           job.mode == "generate")
        finally:
            result.ignored = reader.ignored
            result.running = (pending[0] if pending else None) if result.exec_done else ""
            if result.started and not result.finished and result.stop is None and result.internal is None:
                result.stop = self._exit_stop()
            elif not result.started and result.internal is None and result.start_failure is None:
                result.start_failure = f"it ended before starting ({self._exit_words()})"
            result.duration = time.perf_counter() - self._started
            self.group.kill()
            self._drain()
            result.stdout, result.stderr = self._out.text(), self._err.text()
        return result

    # ----------------------------------------------------------------------- the loop

    def _exchange(self, job_bytes: bytes, reader: RecordReader, result: WorkerRun, pending: list[str],
                  timeout: float, step_timeout: float | None, generate: bool) -> None:
        stdin = self.process.stdin
        fcntl.fcntl(stdin, fcntl.F_SETFL, fcntl.fcntl(stdin, fcntl.F_GETFL) | os.O_NONBLOCK)
        to_send = memoryview(job_bytes)
        sel = selectors.DefaultSelector()
        sel.register(self.process.channel, selectors.EVENT_READ, "channel")
        sel.register(self.process.stdout, selectors.EVENT_READ, self._out)
        sel.register(self.process.stderr, selectors.EVENT_READ, self._err)
        sel.register(stdin, selectors.EVENT_WRITE, "stdin")
        deadline = None
        step_started = last_watch = last_disk = time.perf_counter()
        last_confirm, confirm_every = 0.0, CONFIRM_INTERVAL
        try:
            while True:
                now = time.perf_counter()
                if not result.started:  # still starting: the grader's time, not the submission's
                    if now - self._started > STARTUP_TIMEOUT:
                        result.start_failure = f"it did not start within {STARTUP_TIMEOUT:.0f} s"
                        return
                    wait = 0.5
                else:
                    deadline = deadline or now + timeout
                    if now >= deadline:
                        result.stop = SubmissionTimeout(timeout)
                        return
                    if step_timeout is not None and now - step_started >= step_timeout:
                        result.stop = CaseTimeout(step_timeout)
                        return
                    if now - last_watch >= WATCH_INTERVAL:
                        last_watch = now
                        limit = self.limits.memory_mb << 20
                        if self.group.oom_kills():  # the kernel enforced the group's limit
                            result.stop = OutOfMemory(self.limits.memory_mb)
                            return
                        # resident sizes count pages shared after a fork once per process: confirm
                        if self.group.resident_bytes() > limit and now - last_confirm >= confirm_every:
                            last_confirm = now
                            precise = self.group.proportional_bytes()
                            confirm_every = max(CONFIRM_INTERVAL, CONFIRM_SHARE * (time.perf_counter() - now))
                            if precise > limit:
                                result.stop = OutOfMemory(self.limits.memory_mb)
                                return
                    if self.mode == "none" and now - last_disk >= DISK_WATCH_INTERVAL:
                        last_disk = now
                        if self._disk_bytes() > self.limits.disk_mb << 20:
                            result.stop = DiskFull(self.limits.disk_mb)
                            return
                    wait = min(deadline - now, WATCH_INTERVAL,
                               step_started + step_timeout - now if step_timeout else WATCH_INTERVAL)
                for key, _ in sel.select(timeout=max(wait, 0.01)):
                    if key.data == "stdin":
                        to_send = self._send(stdin, to_send, sel)
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if key.data != "channel":
                        if chunk:
                            key.data.add(chunk)
                        else:
                            sel.unregister(key.fd)
                        continue
                    if not chunk:
                        return  # the worker closed the channel: it ended
                    try:
                        if self._apply_all(reader.feed(chunk), result, pending, generate):
                            step_started = time.perf_counter()
                    except ProtocolViolation as e:
                        if not result.started:
                            result.internal = f"the worker broke the protocol before starting: {e}"
                        else:
                            result.stop = ProtocolBroken(str(e))
                        return
                    if result.finished or result.stop or result.internal:
                        return
        finally:
            sel.close()

    def _send(self, fd: int, data: memoryview, sel: selectors.BaseSelector) -> memoryview:
        """Write what stdin takes now; close it when everything is sent (input() then sees end-of-file)."""
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            return data
        except OSError:  # it died: the loop finds out how
            data = data[len(data):]
        if not data:
            sel.unregister(fd)
            self.process.close_fd(fd)
        return data

    @classmethod
    def _apply_all(cls, records: Iterable[Record], result: WorkerRun, pending: list[str], generate: bool) -> bool:
        """Take the records read at once, in order, up to the run's end (a stop, the grader's failure, done):
        what follows the end in the same read never counts. True when one of them starts a new step."""
        stepped = False
        for record in records:
            stepped |= cls._apply(record, result, pending, generate)
            if result.finished or result.stop or result.internal:
                break
        return stepped

    @staticmethod
    def _apply(record: Record, result: WorkerRun, pending: list[str], generate: bool) -> bool:
        """Take one record in protocol order; True when it starts a new step."""
        if isinstance(record, Internal):
            if not result.started:
                result.internal = record.traceback
            else:  # submitted code ran: not a trustworthy report of the grader's own failure
                result.stop = WorkerFailed()
                result.late_traceback = record.traceback
            return False
        if isinstance(record, Ready):
            if result.started:
                raise ProtocolViolation("the worker said it started twice")
            result.started = True
            return True
        if not result.started:
            raise ProtocolViolation("a record came before the worker started")
        if isinstance(record, ExecRecord):
            if result.exec_done:
                raise ProtocolViolation("the top-level statements were reported twice")
            result.exec_done, result.exec_errors = True, record.errors
            return True
        if not result.exec_done:
            raise ProtocolViolation("a case was reported before the top-level statements ran")
        if isinstance(record, CallRecord):
            if record.id not in pending:
                raise ProtocolViolation("a result for a case that was not asked for, or reported twice")
            result.observations[record.id] = observe(record, reference=generate)
            pending.remove(record.id)
            return True
        if isinstance(record, Done):
            if pending:
                raise ProtocolViolation("the worker said it was done before reporting every case")
            result.finished = True
        return False

    def _disk_bytes(self) -> int:
        """Without a sandbox: what the worker wrote in its folder and, as its own user, in /tmp and the like."""
        used = folder_bytes(self.run_dir)
        return used + owned_bytes(self.uid) if self.uid is not None else used

    # ----------------------------------------------------------------------- ending

    def _exit_code(self) -> int | None:
        return self.process.exit_code(timeout=1.0)

    def _exit_stop(self) -> Stop:
        code = self._exit_code()
        if self.group.oom_kills():
            return OutOfMemory(self.limits.memory_mb)
        if code is None:
            return Unresponsive()
        if code == WORKER_FAILED_EXIT:
            return WorkerFailed()
        if code < 0:
            return Crashed(signal_name(-code))
        return Exited(code)

    def _exit_words(self) -> str:
        code = self._exit_code()
        return "still running" if code is None else f"exit status {code}"

    def _drain(self, seconds: float = 0.5) -> None:
        """Read what is left in stdout/stderr after the worker is gone (bounded in time)."""
        sel = selectors.DefaultSelector()
        for fd, sink in ((self.process.stdout, self._out), (self.process.stderr, self._err)):
            sel.register(fd, selectors.EVENT_READ, sink)
        end = time.perf_counter() + seconds
        try:
            while sel.get_map() and time.perf_counter() < end:
                for key, _ in sel.select(timeout=0.05):
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        key.data.add(chunk)
                    else:
                        sel.unregister(key.fd)
        finally:
            sel.close()

    def close(self) -> None:
        """Kill every process of the worker, close its pipes and clean up after it."""
        if self._closed:
            return
        self._closed = True
        self.wait_ready()
        self.group.close()
        self.process.release()
        self._cleanup()
