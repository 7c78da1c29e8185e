"""The batch's grading processes: ``-j`` of them, each with its own warm slot (or cold workers).

Python runs one thread at a time in a process, and reading, planning, judging and rendering
a submission's feedback take about as much CPU as running its code does; so the batch grades
in ``-j`` processes of its own (``python -m grader.batch.workers``: a fresh interpreter,
nothing of the caller's script or threads comes along), each holding one ``WarmSlot``
(``grader.execute.slots``) for its lifetime. Each submission comes back as a ``Graded``: the
store's entry, made ready there (``grader.batch.entries.prepare``), and its feedback, rendered
there from the report exactly as the store will read it back. The parent only writes them
down.

The wire is ours and trusted on both sides (these processes run the grader's code; the
submissions run in their sandboxed workers): length-prefixed pickles, requests on the
process's stdin, results on a dedicated pipe. A grading process that dies takes only its
current submission with it (an ``internal`` result, graded again by the next run); a new
one takes its place, unless the pool is closing. Closing (the batch's end, Ctrl-C, a Dask
worker's plugin removed) ends every process the pool started: an idle one at the end of its
requests, a busy one told to drop its submission (SIGINT: its sandboxed worker is killed and
its slot closed, as on Ctrl-C in a terminal), each killed if it does not end in time.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from grader.batch.feedback import feedback_texts
from grader.batch.entries import Entry, prepare
from grader.config import GradeConfig, Limits
from grader.execute.slots import SlotTally
from grader.model.messages import signal_name

_FRAME = struct.Struct("!Q")
#: How long a grading process may take to finish its slot when told to stop.
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class Graded:
    """One submission graded in a grading process."""

    entry: Entry
    #: how long its grading took, from when it started (not when it was queued)
    seconds: float
    #: (file suffix, text) of each feedback file, for the student audience; empty without a report
    feedback: tuple[tuple[str, str], ...]
    #: CPU seconds its forked workers used, as the zygote measured them (0.0 with cold workers)
    worker_cpu: float
    #: what the grading process's warm slot did since its last submission (its start, for the first);
    #: None with cold workers
    slot: SlotTally | None = None


@dataclass(frozen=True)
class Task:
    """One submission for an engine to grade: the caller's ``key``, the file graded (``path``: the run's
    private copy of the student's file), and what its report calls it (``shown``: the student's own file)."""

    key: Any
    path: Path
    shown: str


class GradingEngine(Protocol):
    """What ``run_batch`` grades with: the local ``Pool`` or a Dask ``Cluster``. A context manager (leaving
    it stops every grading process); ``grade_all`` yields (key, ``Graded``) as each task finishes, in any
    order, each task once, the report naming its ``shown`` file and the course as this machine names it."""

    def grade_all(self, tasks: Sequence[Task], config: GradeConfig) -> Iterator[tuple[Any, Graded]]: ...

    def __enter__(self) -> "GradingEngine": ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class Shown:
    """What a report graded elsewhere calls its submission and course (``grade batch --scheduler``:
    the client's path and course folder, not the Dask worker's copies), so that it reads as a
    local one does. Messages name a file by its name alone, which the copy keeps."""

    submission: str
    course: str


def as_graded(entry: Entry, seconds: float = 0.0, worker_cpu: float = 0.0, slot: SlotTally | None = None,
              source: Path | None = None) -> Graded:
    """A stored entry made into the batch's answer: its student's feedback rendered from the report as
    the store reads it back (none without a report), with the notebook page of ``source``, the file graded."""
    texts = feedback_texts(entry.report, source) if entry.report is not None else ()
    return Graded(entry, seconds, texts, worker_cpu, slot)


def failed(message: str, seconds: float = 0.0) -> Graded:
    """The grader's own failure on one submission: listed, and graded again by the next run."""
    return Graded(prepare(None, "internal", message), seconds, (), 0.0)


# --------------------------------------------------------------------------- the parent's side


class _Process:
    """One grading process: send a path, get its ``Graded``."""

    def __init__(self, setup: tuple[Any, ...]):
        read_fd, write_fd = os.pipe()
        try:
            # A session of its own: a terminal's Ctrl-C reaches the batch alone, which stops the pool in its
            # own words (``close``); SIGINT ignored until the process is ready to drop a submission on it.
            self.proc = subprocess.Popen([sys.executable, "-m", "grader.batch.workers", str(write_fd)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write_fd,),
                                         start_new_session=True, preexec_fn=_ignore_sigint)
        finally:
            os.close(write_fd)
        self.results = os.fdopen(read_fd, "rb")
        assert self.proc.stdin is not None
        self.requests = self.proc.stdin
        _send(self.requests, setup)

    def grade(self, path: Path, config: GradeConfig, shown: Shown | None = None) -> Graded:
        _send(self.requests, (str(path), config, shown))
        graded = _receive(self.results)
        if not isinstance(graded, Graded):
            raise EOFError("no result came back")
        return graded

    def stop(self) -> None:
        """Let it finish: end of requests, so it closes its slot and exits; killed if it does not."""
        self.end_requests()
        self.reap(time.monotonic() + STOP_SECONDS)

    def end_requests(self) -> None:
        """No more requests: an idle process closes its slot and exits."""
        try:
            self.requests.close()
        except (OSError, ValueError):
            pass

    def interrupt(self) -> None:
        """Drop the submission in hand (SIGINT: a KeyboardInterrupt in the process, which then exits)."""
        try:
            self.proc.send_signal(signal.SIGINT)
        except OSError:
            pass

    def reap(self, deadline: float) -> None:
        """Wait for it to end until ``deadline`` (``time.monotonic``), then kill it; close its results pipe."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:  # after its end: a thread still reading it has had its end of file
            self.results.close()
        except (OSError, ValueError):
            pass

    def describe_end(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "it stopped answering"
        if code < 0:
            return f"it ended ({signal_name(-code)})"
        return f"it ended (exit status {code})"


class Pool:
    """``width`` grading processes, started now; ``grade_one`` and ``grade_all`` grade in them.

    ``warm``: each process holds a warm slot (bubblewrap mode); else every submission gets a
    cold worker. ``limits`` and ``hide`` are what the slots' workers get. Thread-safe: each
    ``grade_one`` takes an idle process for itself (waiting for one), so up to ``width``
    threads grade at once. Use as a context manager; ``close`` (from any thread, also while
    grades are in flight) ends every process the pool started, and the pool starts no other.
    """

    def __init__(self, width: int, warm: bool, limits: Limits, hide: tuple[Path, ...], course_shown: str = ""):
        self._setup = (warm, limits, tuple(hide))
        #: what reports call the course folder (``Task.shown`` names each submission); "" leaves both as graded
        self.course_shown = course_shown
        self.width = max(1, width)
        self._idle: queue.SimpleQueue[_Process | None] = queue.SimpleQueue()  # None: the pool is closed
        self._lock = threading.Lock()
        self._closed = False
        self._busy: set[_Process] = set()
        self._all: list[_Process] = []
        try:
            for _ in range(self.width):
                self._all.append(_Process(self._setup))
        except BaseException:
            self.close()
            raise
        for process in self._all:
            self._idle.put(process)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def grade_one(self, path: Path, config: GradeConfig, shown: Shown | None = None) -> Graded:
        """Grade ``path`` in an idle process. A process that fails is replaced; the submission's
        result is then the grader's own failure (``internal``), graded again by the next run. Once
        the pool is closed, every submission is that failure at once."""
        process = self._take()
        if process is None:
            return failed("the batch stopped before this submission was graded")
        start = time.perf_counter()
        try:
            graded = process.grade(path, config, shown)
        except Exception as e:  # noqa: BLE001 - EOF, a broken pipe, a result that cannot be read
            graded = failed(f"the grading process failed on this submission: {process.describe_end()} "
                            f"({type(e).__name__})", time.perf_counter() - start)
            process.stop()
            self._give_back(process, self._replacement(process))
            return graded
        self._give_back(process, process)
        return graded

    def _take(self) -> _Process | None:
        """An idle process, now busy; None once the pool is closed (waiting until one is idle)."""
        process = self._idle.get()
        with self._lock:
            if process is None or self._closed:
                self._idle.put(None)  # for the next one waiting
                return None
            self._busy.add(process)
        return process

    def _replacement(self, failed_process: _Process) -> _Process | None:
        """A new process in place of one that failed; none once the pool is closed (decided under the
        lock that ``close`` takes, so that ``close`` ends every process started)."""
        with self._lock:
            if failed_process in self._all:
                self._all.remove(failed_process)
            if self._closed:
                return None
            process = _Process(self._setup)
            self._all.append(process)
            return process

    def _give_back(self, taken: _Process, process: _Process | None) -> None:
        with self._lock:
            self._busy.discard(taken)
            if process is not None and not self._closed:
                self._idle.put(process)

    def grade_all(self, tasks: Sequence[Task], config: GradeConfig) -> Iterator[tuple[Any, Graded]]:
        """Grade each task with ``width`` threads; yield (key, Graded) in the order they finish
        (``GradingEngine``)."""
        todo: queue.SimpleQueue[Task] = queue.SimpleQueue()
        for task in tasks:
            todo.put(task)
        done: queue.SimpleQueue[tuple[Any, Graded]] = queue.SimpleQueue()

        def serve() -> None:
            while True:
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                shown = Shown(task.shown, self.course_shown) if self.course_shown else None
                done.put((task.key, self.grade_one(task.path, config, shown)))

        threads = [threading.Thread(target=serve, daemon=True) for _ in range(self.width)]
        for t in threads:
            t.start()
        for _ in tasks:
            yield done.get()
        for t in threads:
            t.join()

    def close(self) -> None:
        """End every process (idle ones at the end of their requests, busy ones told to drop their
        submission, any left after ``STOP_SECONDS`` killed); start no other. Safe to call again."""
        with self._lock:
            self._closed = True
            processes, self._all = self._all, []
            busy = [p for p in processes if p in self._busy]
        self._idle.put(None)  # wakes a grade_one waiting for an idle process
        for process in processes:
            process.end_requests()
        for process in busy:
            process.interrupt()
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            process.reap(deadline)


def _ignore_sigint() -> None:
    """In a grading process before it runs Python (Python keeps an ignored SIGINT ignored at start-up):
    an interrupt while it imports is no traceback; ``main`` takes SIGINT back once it can drop a
    submission cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _send(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("the stream ended")
    size = _FRAME.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a frame")
    return pickle.loads(data)


# --------------------------------------------------------------------------- the grading process


def main(argv: list[str]) -> int:
    """A grading process: its setup, then one path at a time until its stdin ends (the batch is over,
    or its process died: then the current submission is finished first, and the slot closed). A
    KeyboardInterrupt (Ctrl-C in a terminal, or ``Pool.close`` with a submission in hand) drops the
    submission: its worker is killed on the way out, the slot closed, and the process exits 130."""
    from grader.execute.slots import WarmSlot

    results = os.fdopen(int(argv[1]), "wb")
    requests = sys.stdin.buffer
    slot = None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, SIGINT drops the submission in hand
    try:
        warm, limits, hide = _receive(requests)
        slot = WarmSlot("bwrap", limits, hide) if warm else None
        _serve(requests, results, slot)
        return 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up below is not interrupted again
        return 130
    finally:
        if slot is not None:
            slot.close()


def _serve(requests: BinaryIO, results: BinaryIO, slot: Any) -> None:
    """Grade one path at a time, each result sent back, until the requests end."""
    from grader.pipeline import grade_submission

    told = SlotTally()  # what the batch was told of the slot so far
    while True:
        try:
            path, config, shown = _receive(requests)
        except EOFError:
            return
        cpu_before = slot.worker_cpu if slot is not None else 0.0
        start = time.perf_counter()
        try:
            report = grade_submission(Path(path), config, slot)
            if shown is not None:
                report = dataclasses.replace(report, submission=shown.submission, course=shown.course)
            entry = prepare(report)
        except Exception as e:  # noqa: BLE001 - the grader's own failure: listed, graded again next run
            entry = prepare(None, "internal", f"{type(e).__name__}: {e}")
        seconds = time.perf_counter() - start
        tally = None
        if slot is not None:
            slot.settle()  # the zygote cleaned up while the grade was judged and rendered
            now = slot.tally()
            tally, told = now - told, now
        try:
            _send(results, as_graded(entry, seconds, (slot.worker_cpu - cpu_before) if slot is not None else 0.0, tally,
                                     Path(path)))
        except BrokenPipeError:  # the batch (or the Dask worker) that asked is gone: nothing to answer
            return


if __name__ == "__main__":
    # Run as the module's own name, so that what it sends is pickled as grader.batch.workers.Graded.
    from grader.batch.workers import main as _main

    sys.exit(_main(sys.argv))
