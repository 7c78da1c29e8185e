"""The execute stage: run a submission's cases in workers, restarting after a crash or a hang.

A submission's cases run in parts (``Part``), each in workers of its own: the public cases
first, then the hidden ones in a fresh worker (``grader.plan.plan.Plan.runs``). A worker is
given only its own part's calls and inputs, so no public case runs in a process that ever held
a hidden case's inputs, and what a private part's workers show (the top-level statements'
errors, what the code printed, how it stopped) is kept apart for instructors
(``Execution.private_notes``).

One bad case never stops the others: when the submission's code crashes, hangs or breaks
its worker in a case, that case is lost (with the ``Stop`` that says why) and the remaining
cases of its part run again in a fresh worker, at most ``MAX_RESTARTS`` times for the whole
submission and within the submission's time limit. A stop in the top-level statements loses
every case left, of every part. A worker that cannot even start is the grader's fault
(``InternalError``): nothing of the submission had run.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from grader.errors import InternalError
from grader.execute.observation import Observation
from grader.execute.protocol import Job
from grader.execute.runner import STARTUP_TIMEOUT, Worker, WorkerRun
from grader.model.outcomes import (CaseStop, Cause, ChannelNoise, ErrorInfo, Note, NotRun, OutputTail, SkippedStatement,
                                     Stop, Stopped, TopLevelStop)

#: How many fresh workers may replace one that crashed or hung, per submission (all parts together).
MAX_RESTARTS = 3


@dataclass(frozen=True)
class Part:
    """One job of a submission, run in workers of their own that never run another part's cases."""

    job: Job
    #: its calls' inputs (safetensors bytes), and nothing of another part's
    inputs: bytes
    #: what its workers show may carry hidden cases' inputs: its notes are for instructors only
    private: bool = False


@dataclass(frozen=True)
class Execution:
    """What running a submission's cases produced, whatever happened to its workers."""

    observations: dict[str, Observation]
    #: case id -> why it has no observation (its code stopped in it, or no time or restarts were left)
    lost: dict[str, Cause]
    #: errors of top-level statements (each one was skipped), as the first part's first worker saw them
    #: (none when that part is private: they are among ``private_notes``)
    exec_errors: tuple[ErrorInfo, ...]
    #: what the runs show (skipped statements, stops, what the code printed before one)
    notes: tuple[Note, ...]
    #: the same of private parts (hidden cases): for instructors only
    private_notes: tuple[Note, ...] = ()


@dataclass
class _PartRun:
    """What one part's workers produced."""

    observations: dict[str, Observation] = dataclasses.field(default_factory=dict)
    lost: dict[str, Cause] = dataclasses.field(default_factory=dict)
    exec_errors: tuple[ErrorInfo, ...] = ()
    notes: list[Note] = dataclasses.field(default_factory=list)
    restarts: int = 0
    stops: int = 0
    #: the stop in top-level code that ended it (every case left would hit it again)
    top_level: Stop | None = None


def run_cases(started: Sequence[Worker], new_worker: Callable[[], Worker], parts: Sequence[Part], timeout: float,
              case_timeout: float) -> Execution:
    """Run every call of every part, in order, each part in fresh workers; after a crash or a hang, continue
    the part's rest in a fresh worker.

    ``started``: workers already started for the first parts (a cold one for the next part can start
    while the last part runs), just before this call; the other parts, and every restart, get
    ``new_worker()``. A started worker must get its job within ``STARTUP_TIMEOUT`` of its start: after
    a long part, the next part's is replaced by a fresh one.
    """
    began = time.perf_counter()
    deadline = began + timeout
    observations: dict[str, Observation] = {}
    lost: dict[str, Cause] = {}
    notes: list[Note] = []
    private: list[Note] = []
    exec_errors: tuple[ErrorInfo, ...] = ()
    restarts = stops = 0
    for i, part in enumerate(parts):
        if i and time.perf_counter() >= deadline:  # the earlier parts took the submission's time
            lost.update({c.id: NotRun("time") for later in parts[i:] for c in later.job.calls})
            break
        worker = started[i] if i < len(started) else None
        if worker is not None and i and time.perf_counter() - began > STARTUP_TIMEOUT / 2:
            worker.close()  # it waited too long for its job: it would count as a worker that never started
            worker = None
        worker = worker or new_worker()
        run = _run_part(worker, new_worker, part, deadline, case_timeout, MAX_RESTARTS - restarts, stops)
        observations.update(run.observations)
        lost.update(run.lost)
        restarts += run.restarts
        stops += run.stops
        shown = private if part.private else notes
        if i == 0:  # the top-level statements' errors once: later workers run the same statements
            exec_errors = () if part.private else run.exec_errors
            shown += [SkippedStatement(e) for e in run.exec_errors]
        shown += run.notes
        if run.top_level is not None:
            lost.update({c.id: Stopped(run.top_level, "top-level")
                         for later in parts[i + 1:] for c in later.job.calls})
            break
    return Execution(observations, lost, exec_errors, tuple(notes), tuple(private))


def _run_part(first: Worker, new_worker: Callable[[], Worker], part: Part, deadline: float, case_timeout: float,
              restarts_left: int, stops_before: int) -> _PartRun:
    """One part: its calls in ``first``, then the rest in fresh workers after each crash or hang (at most
    ``restarts_left``; ``stops_before``: the submission's stops in earlier parts)."""
    out = _PartRun()
    ignored = 0
    job = part.job
    calls = list(job.calls)
    worker = first
    while True:
        run = worker.run(dataclasses.replace(job, calls=calls, nonce=uuid.uuid4().hex), part.inputs,
                         max(deadline - time.perf_counter(), 0.1), case_timeout)
        _check_started(run)
        if worker is first:
            out.exec_errors = run.exec_errors
        out.observations.update(run.observations)
        ignored += run.ignored
        if run.finished or run.stop is None:
            break
        stop = run.stop
        out.stops += 1
        if run.stderr.strip():
            out.notes.append(OutputTail(" ".join(run.stderr.strip().splitlines()[-3:])[-300:]))
        if run.running == "":  # stopped in top-level code: every case would hit it again
            out.notes.append(TopLevelStop(stop))
            out.lost.update({c.id: Stopped(stop, "top-level") for c in calls})
            out.top_level = stop
            break
        if run.running:
            out.lost[run.running] = Stopped(stop, "case")
            out.notes.append(CaseStop(stop, run.running))
        calls = [c for c in calls if c.id not in out.observations and c.id not in out.lost]
        if not calls:
            break
        out_of_time = deadline - time.perf_counter() <= 0
        if out_of_time or out.restarts >= restarts_left:
            why = NotRun("time") if out_of_time else NotRun("restarts", stops_before + out.stops)
            out.lost.update({c.id: why for c in calls})
            break
        out.restarts += 1
        worker = new_worker()
    if ignored:
        out.notes.append(ChannelNoise(ignored))
    return out


def _check_started(run: WorkerRun) -> None:
    """A worker that failed before the submission started is the grader's fault."""
    if run.internal:
        raise InternalError(f"the grader's worker failed before running the submission:\n{run.internal}")
    if run.start_failure:
        raise InternalError(f"the grader's worker could not start ({run.start_failure}):\n{run.stderr[-2000:]}")
