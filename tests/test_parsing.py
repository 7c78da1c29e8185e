"""The grader's process parses Python one thread at a time (``grader/plan/parsing.py``).

CPython 3.11's AST builder shares its depth counter between threads; two parses at once can
fail with a SystemError that is nobody's fault but the interpreter's. These tests hold the
two guards: the lock itself, and the mistakes' threads receiving jobs parsed before they start.
"""
from __future__ import annotations

import ast
import threading
import time
from contextlib import contextmanager

from conftest import course
from grader import GradeConfig
from grader.course import reference_outputs
from grader.course.assignments import get_assignment
from grader.execute.runner import WorkerRun
from grader.plan.parsing import parse
from grader.spec.mistakes import load_mistakes


def test_parse_lets_one_thread_in_at_a_time(monkeypatch):
    inside, most, guard = [0], [0], threading.Lock()
    real = ast.parse

    def slow_parse(source, filename="<unknown>", *args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)  # long enough for the other threads to try to come in
        try:
            return real(source, filename, *args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(ast, "parse", slow_parse)
    trees = []

    def parse_some():
        for i in range(5):
            trees.append(parse(f"x = {i}\n"))

    threads = [threading.Thread(target=parse_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trees) == 20 and all(isinstance(t, ast.Module) for t in trees)
    assert most[0] == 1, f"{most[0]} threads were inside CPython's parser at once"


def test_a_parse_inside_a_parse_on_the_same_thread_does_not_deadlock(monkeypatch):
    """A finalizer that parses while its own thread is parsing (the lock is re-entrant)."""
    real = ast.parse
    entered, nested = [], []

    def parse_and_nest(source, filename="<unknown>", *args, **kwargs):
        if not entered:
            entered.append(source)
            nested.append(parse("y = 2\n"))
        return real(source, filename, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", parse_and_nest)
    done = []
    t = threading.Thread(target=lambda: done.append(parse("x = 1\n")), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "a parse inside a parse on one thread waited for itself"
    assert isinstance(done[0], ast.Module) and len(nested) == 1


def test_the_mistakes_threads_parse_nothing(monkeypatch, tmp_path):
    """The known mistakes run two threads at a time; each edited reference is parsed before they start."""
    main = threading.current_thread()
    parsed_on, ran_on = [], []
    real = ast.parse

    def recording_parse(*args, **kwargs):
        parsed_on.append(threading.current_thread())
        return real(*args, **kwargs)

    class FakeWorker:  # answers at once, as a worker that observed nothing
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def run(self, job, inputs, *timeouts):
            ran_on.append(threading.current_thread())
            time.sleep(0.01)
            return WorkerRun(started=True, exec_done=True, finished=True)

    @contextmanager
    def fake_workers(config):
        yield FakeWorker

    class Expected:
        def inputs(self):
            return b""

    assignment = get_assignment(course(), "mha")
    mistakes = load_mistakes(assignment.folder)
    assert len(mistakes) >= 2, "the test needs two shares of mistakes"
    monkeypatch.setattr(ast, "parse", recording_parse)
    monkeypatch.setattr(reference_outputs, "_variant_workers", fake_workers)
    runs = reference_outputs.variant_outputs(assignment, Expected(), GradeConfig(cache_dir=tmp_path, use_cache=False))
    assert set(runs) == {m.id for m in mistakes}
    assert len(ran_on) == len(mistakes) and any(t is not main for t in ran_on), "the mistakes did not run in threads"
    assert len(parsed_on) >= len(mistakes), "the edited references were not parsed"
    assert all(t is main for t in parsed_on), "a mistake's thread parsed Python"
