"""The execute stage: run a submission's cases in workers, restarting after a crash or a hang.

One bad case never stops the others: when the submission's code crashes, hangs or breaks
its worker in a case, that case is lost (with the ``Stop`` that says why) and the remaining
cases run again in a fresh worker, at most ``MAX_RESTARTS`` times and within the
submission's time limit. A worker that cannot even start is the grader's fault
(``InternalError``): nothing of the submission had run.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from grader.errors import InternalError
from grader.execute.observation import Observation
from grader.execute.protocol import ErrorInfo, Job
from grader.execute.runner import Worker, WorkerRun
from grader.report.outcomes import Cause, Note

#: How many fresh workers may replace one that crashed or hung, per submission.
MAX_RESTARTS = 3


@dataclass(frozen=True)
class Execution:
    """What running a submission's cases produced, whatever happened to its workers."""

    observations: dict[str, Observation]
    #: case id -> why it has no observation (its code stopped in it, or no time or restarts were left)
    lost: dict[str, Cause]
    #: errors of top-level statements (each one was skipped)
    exec_errors: tuple[ErrorInfo, ...]
    notes: tuple[Note, ...]


def run_cases(first: Worker, new_worker: Callable[[], Worker], job: Job, inputs: bytes, timeout: float,
              case_timeout: float) -> Execution:
    """Run every call of ``job``; after a crash or hang, continue the rest in a fresh worker."""
    observations: dict[str, Observation] = {}
    lost: dict[str, Cause] = {}
    notes: list[Note] = []
    exec_errors: tuple[ErrorInfo, ...] = ()
    ignored = 0
    deadline = time.perf_counter() + timeout
    calls = list(job.calls)
    worker = first
    for attempt in range(MAX_RESTARTS + 1):
        run = worker.run(dataclasses.replace(job, calls=calls, nonce=uuid.uuid4().hex), inputs,
                         max(deadline - time.perf_counter(), 0.1), case_timeout)
        _check_started(run)
        if attempt == 0:
            exec_errors = run.exec_errors
        observations.update(run.observations)
        ignored += run.ignored
        if run.finished or run.stop is None:
            break
        stop = dataclasses.asdict(run.stop)
        if run.stderr.strip():
            notes.append(Note("output_tail", {"text": " ".join(run.stderr.strip().splitlines()[-3:])[-300:]}))
        if run.running == "":  # stopped in top-level code: every case would hit it again
            notes.append(Note("top_level_stop", {"stop": stop}))
            lost.update({c.id: Cause("stopped", {"stop": stop, "scope": "top-level"}) for c in calls})
            break
        if run.running:
            lost[run.running] = Cause("stopped", {"stop": stop, "scope": "case"})
            notes.append(Note("case_stop", {"stop": stop, "case": run.running}))
        calls = [c for c in calls if c.id not in observations and c.id not in lost]
        if not calls:
            break
        out_of_time = deadline - time.perf_counter() <= 0
        if out_of_time or attempt == MAX_RESTARTS:
            why = {"why": "time"} if out_of_time else {"why": "restarts", "stops": MAX_RESTARTS + 1}
            lost.update({c.id: Cause("not_run", why) for c in calls})
            break
        worker = new_worker()
    if ignored:
        notes.append(Note("channel_noise", {"lines": ignored}))
    return Execution(observations, lost, exec_errors, tuple(notes))


def _check_started(run: WorkerRun) -> None:
    """A worker that failed before the submission started is the grader's fault."""
    if run.internal:
        raise InternalError(f"the grader's worker failed before running the submission:\n{run.internal}")
    if run.start_failure:
        raise InternalError(f"the grader's worker could not start ({run.start_failure}):\n{run.stderr[-2000:]}")
