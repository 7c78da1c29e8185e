"""The batch's grading processes: ``-j`` of them, each with its own warm slot (or cold workers).

Python runs one thread at a time in a process, and reading, planning, judging and rendering
a submission's feedback take about as much CPU as running its code does; so the batch grades
in ``-j`` processes of its own (``python -m grader.batch.workers``: a fresh interpreter,
nothing of the caller's script or threads comes along), each holding one ``WarmSlot``
(``grader.execute.slots``) for its lifetime. Each submission comes back as a ``Graded``: the
store's entry, made ready there (``grader.batch.store.prepare``), and its feedback, rendered
there from the report exactly as the store will read it back. The parent only writes them
down.

The wire is ours and trusted on both sides (these processes run the grader's code; the
submissions run in their sandboxed workers): length-prefixed pickles, requests on the
process's stdin, results on a dedicated pipe. A grading process that dies takes only its
current submission with it (an ``internal`` result, graded again by the next run); a new
one takes its place.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from grader.batch.feedback import feedback_texts
from grader.batch.store import Entry, prepare
from grader.config import GradeConfig, Limits
from grader.execute.slots import SlotTally

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
class Shown:
    """What a report graded elsewhere calls its submission and course (``grade batch --scheduler``:
    the client's path and course folder, not the Dask worker's copies), so that it reads as a
    local one does. Messages name a file by its name alone, which the copy keeps."""

    submission: str
    course: str


def failed(message: str, seconds: float = 0.0) -> Graded:
    """The grader's own failure on one submission: listed, and graded again by the next run."""
    return Graded(prepare(None, "internal", message), seconds, (), 0.0)


# --------------------------------------------------------------------------- the parent's side


class _Process:
    """One grading process: send a path, get its ``Graded``."""

    def __init__(self, setup: tuple[Any, ...]):
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "grader.batch.workers", str(write_fd)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write_fd,))
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
        for f in (self.requests, self.results):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def describe_end(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "it stopped answering"
        if code < 0:
            try:
                return f"it ended (signal {signal.Signals(-code).name})"
            except ValueError:
                return f"it ended (signal {-code})"
        return f"it ended (exit status {code})"


class Pool:
    """``width`` grading processes, started now; ``grade_one`` and ``grade_all`` grade in them.

    ``warm``: each process holds a warm slot (bubblewrap mode); else every submission gets a
    cold worker. ``limits`` and ``hide`` are what the slots' workers get. Thread-safe: each
    ``grade_one`` takes an idle process for itself (waiting for one), so up to ``width``
    threads grade at once. Use as a context manager; ``close`` stops the processes (and their
    slots).
    """

    def __init__(self, width: int, warm: bool, limits: Limits, hide: tuple[Path, ...]):
        self._setup = (warm, limits, tuple(hide))
        self.width = max(1, width)
        self._idle: queue.SimpleQueue[_Process] = queue.SimpleQueue()
        self._all = [_Process(self._setup) for _ in range(self.width)]
        self._lock = threading.Lock()
        for process in self._all:
            self._idle.put(process)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def grade_one(self, path: Path, config: GradeConfig, shown: Shown | None = None) -> Graded:
        """Grade ``path`` in an idle process. A process that fails is replaced; the submission's
        result is then the grader's own failure (``internal``), graded again by the next run."""
        process = self._idle.get()
        start = time.perf_counter()
        try:
            return process.grade(path, config, shown)
        except Exception as e:  # noqa: BLE001 - EOF, a broken pipe, a result that cannot be read
            graded = failed(f"the grading process failed on this submission: {process.describe_end()} "
                            f"({type(e).__name__})", time.perf_counter() - start)
            process.stop()
            process = _Process(self._setup)
            with self._lock:
                self._all.append(process)
            return graded
        finally:
            self._idle.put(process)

    def grade_all(self, tasks: list[tuple[Any, Path]], config: GradeConfig) -> Iterator[tuple[Any, Graded]]:
        """Grade each (key, path) with ``width`` threads; yield (key, Graded) in the order they finish."""
        todo: queue.SimpleQueue[tuple[Any, Path]] = queue.SimpleQueue()
        for task in tasks:
            todo.put(task)
        done: queue.SimpleQueue[tuple[Any, Graded]] = queue.SimpleQueue()

        def serve() -> None:
            while True:
                try:
                    key, path = todo.get_nowait()
                except queue.Empty:
                    return
                done.put((key, self.grade_one(path, config)))

        threads = [threading.Thread(target=serve, daemon=True) for _ in range(self.width)]
        for t in threads:
            t.start()
        for _ in tasks:
            yield done.get()
        for t in threads:
            t.join()

    def close(self) -> None:
        with self._lock:
            processes, self._all = self._all, []
        for process in processes:
            process.stop()


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
    or its process died: then the current submission is finished first, and the slot closed)."""
    from grader.execute.slots import WarmSlot
    from grader.pipeline import grade_submission

    results = os.fdopen(int(argv[1]), "wb")
    requests = sys.stdin.buffer
    warm, limits, hide = _receive(requests)
    slot = WarmSlot("bwrap", limits, hide) if warm else None
    told = SlotTally()  # what the batch was told of the slot so far
    try:
        while True:
            try:
                path, config, shown = _receive(requests)
            except EOFError:
                return 0
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
            feedback = feedback_texts(entry.report) if entry.report is not None else ()
            tally = None
            if slot is not None:
                slot.settle()  # the zygote cleaned up while the grade was judged and rendered
                now = slot.tally()
                tally, told = now - told, now
            _send(results, Graded(entry, seconds, feedback,
                                  (slot.worker_cpu - cpu_before) if slot is not None else 0.0, tally))
    finally:
        if slot is not None:
            slot.close()


if __name__ == "__main__":
    # Run as the module's own name, so that what it sends is pickled as grader.batch.workers.Graded.
    from grader.batch.workers import main as _main

    sys.exit(_main(sys.argv))
