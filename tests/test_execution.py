"""grader.execute.execution.run_cases: the restart policy, with scripted workers (no process runs).

Each fake worker follows a script: it observes the calls it is given in order, until the step its
script says it stops at (a case, or the top-level code). What the policy must do: one bad case
costs that case only, the rest run again in a fresh worker; a stop in top-level code loses every
case left, of every part; restarts are bounded for the whole submission; a hidden part's notes are
for instructors; a worker that never started is the grader's fault.
"""
from __future__ import annotations

import dataclasses
import types

import pytest

from grader.errors import InternalError
from grader.execute import execution
from grader.execute.protocol import Job
from grader.execute.runner import WorkerRun
from grader.execute.execution import MAX_RESTARTS, Part, run_cases
from grader.model.outcomes import CaseTimeout, Crashed, ErrorInfo, NotRun, OutOfMemory, Stopped

#: the stops a scripted worker makes, by kind
STOPS = {"case_timeout": CaseTimeout(1.0), "memory": OutOfMemory(100), "crashed": Crashed("SIGSEGV")}


def job(*ids: str) -> Job:
    return Job(mode="run", nonce="x", statements=[], units={}, calls=[types.SimpleNamespace(id=i) for i in ids])


class Scripted:
    """A worker whose run stops where its script says: ``stop_at`` a case id, "" for the top level, None
    to finish; every worker it hands out is recorded in ``started``."""

    def __init__(self, scripts: list[tuple[str | None, str]], started: list):
        self.scripts, self.started = scripts, started

    def __call__(self) -> "Scripted.Worker":
        stop_at, kind = self.scripts.pop(0) if self.scripts else (None, "")
        worker = Scripted.Worker(stop_at, kind)
        self.started.append(worker)
        return worker

    class Worker:
        def __init__(self, stop_at: str | None, kind: str):
            self.stop_at, self.kind, self.ran, self.closed = stop_at, kind, [], False

        def run(self, job: Job, inputs: bytes, timeout: float, case_timeout: float) -> WorkerRun:
            errors = (ErrorInfo(type="NameError", message="x is not defined", bases=(), traceback=""),)
            if self.stop_at == "":
                return WorkerRun(started=True, stop=STOPS[self.kind or "crashed"], running="", stderr="boom\n")
            seen = {}
            for call in job.calls:
                if call.id == self.stop_at:
                    return WorkerRun(started=True, exec_done=True, exec_errors=errors, observations=seen,
                                     stop=STOPS[self.kind or "crashed"], running=call.id)
                seen[call.id] = f"observed {call.id}"
                self.ran.append(call.id)
            return WorkerRun(started=True, exec_done=True, exec_errors=errors, observations=seen, finished=True)

        def close(self) -> None:
            self.closed = True


def run(parts, scripts, timeout=60.0):
    started: list = []
    new = Scripted(scripts, started)
    return run_cases([], new, parts, timeout, 10.0), started


def test_one_bad_case_costs_that_case_and_the_rest_run_in_a_fresh_worker():
    ex, started = run([Part(job("a", "b", "c"), b"")], [("b", "case_timeout")])
    assert sorted(ex.observations) == ["a", "c"] and len(started) == 2
    assert ex.lost["b"] == Stopped(CaseTimeout(1.0), "case")
    assert started[1].ran == ["c"]  # the fresh worker is given only what is left
    assert [n.kind for n in ex.notes] == ["skipped_statement", "case_stop"] and ex.exec_errors[0].type == "NameError"


def test_a_stop_in_top_level_code_loses_every_case_left_of_every_part():
    ex, started = run([Part(job("a", "b"), b""), Part(job("h"), b"", private=True)], [("", "memory")])
    assert not ex.observations and len(started) == 1  # the hidden part never gets a worker
    assert {k: (c.kind, c.scope) for k, c in ex.lost.items()} == {
        "a": ("stopped", "top-level"), "b": ("stopped", "top-level"), "h": ("stopped", "top-level")}
    assert "top_level_stop" in [n.kind for n in ex.notes]


def test_restarts_are_bounded_for_the_whole_submission():
    calls = [f"c{i}" for i in range(MAX_RESTARTS + 3)]
    ex, started = run([Part(job(*calls), b"")], [(c, "crashed") for c in calls])
    assert len(started) == MAX_RESTARTS + 1
    crashed = calls[:MAX_RESTARTS + 1]
    assert all(ex.lost[c].kind == "stopped" for c in crashed)
    assert {c: ex.lost[c] for c in calls[MAX_RESTARTS + 1:]} == {
        c: NotRun("restarts", MAX_RESTARTS + 1) for c in calls[MAX_RESTARTS + 1:]}
    # the restarts left after a first part are what a second part may use
    ex, started = run([Part(job("a", "b"), b""), Part(job("h1", "h2", "h3", "h4"), b"", private=True)],
                      [("a", "crashed"), (None, ""), ("h1", "crashed"), ("h2", "crashed"), ("h3", "crashed")])
    assert sorted(ex.observations) == ["b"] and len(started) == 2 + MAX_RESTARTS  # a part's first worker is no restart
    assert ex.lost["h4"] == NotRun("restarts", 4)


def test_a_hidden_parts_notes_and_top_level_errors_are_for_instructors_only():
    ex, _ = run([Part(job("h1", "h2"), b"", private=True)], [("h1", "crashed")])
    assert ex.exec_errors == () and not ex.notes
    assert [n.kind for n in ex.private_notes] == ["skipped_statement", "case_stop"]


def test_no_time_left_loses_the_later_parts_as_not_run(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(execution.time, "perf_counter", lambda: now[0])
    slow_run = Scripted.Worker.run

    def taking_the_time(self, *args, **kwargs):
        now[0] += 100.0  # the first part takes the submission's whole time
        return slow_run(self, *args, **kwargs)

    monkeypatch.setattr(Scripted.Worker, "run", taking_the_time)
    ex, started = run([Part(job("a"), b""), Part(job("h"), b"", private=True)], [], timeout=50.0)
    assert sorted(ex.observations) == ["a"] and ex.lost["h"].kind == "not_run"
    assert ex.lost["h"] == NotRun("time") and len(started) == 1


def test_a_worker_that_never_started_is_the_graders_fault():
    class Broken(Scripted.Worker):
        def run(self, *args, **kwargs) -> WorkerRun:
            return WorkerRun(start_failure="bwrap: cannot mount /proc", stderr="bwrap: ...")

    with pytest.raises(InternalError, match="could not start"):
        run_cases([], lambda: Broken(None, ""), [Part(job("a"), b"")], 60.0, 10.0)
    assert dataclasses.fields(WorkerRun)  # the real record the runner makes, not a stand-in
