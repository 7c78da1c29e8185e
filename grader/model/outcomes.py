"""What happened, as data: the facts each stage returns, and ``grader.model.messages`` words.

Nothing here is English meant for a person. Stages build these; consumers that need to
know *what* happened (validate, batch statistics, the renderers' grouping) read ``kind``
and ``data``, never a sentence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Why a worker stopped before it finished.
STOP_KINDS = ("case_timeout", "submission_timeout", "crashed", "exited", "memory", "disk", "protocol",
              "worker_failed", "unresponsive")
#: Why a case did not pass (or did not run).
CAUSE_KINDS = (
    "not_implemented",   # the graded class is still the template's blank
    "syntax_error",      # the graded class's cell does not parse
    "too_deep",          # the graded class's cell nests too deeply to read
    "missing_target",    # the graded class is not defined
    "exception",         # the submission's code raised (data: error, phase)
    "stopped",           # the worker stopped in this case or before it (data: stop)
    "not_run",           # no time or restarts were left (data: why: "time", "restarts" with stops,
                         #  or "machine": a cluster's worker died with it each time, alone; data: stops)
    "wrong_answer",      # the code ran; the checks found problems
    "forbidden",         # a forbidden API is used (problems: where)
    "unverified",        # the forbidden-call check needs a run of the class, and none completed
    "pending",           # a hidden case in a student's local check
    "unavailable",       # a check that a student's local check cannot run (instructor code)
)


@dataclass(frozen=True)
class Stop:
    """Why a worker stopped before finishing: one of ``STOP_KINDS``, with its numbers."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            raise ValueError(f"invalid stop {self.kind!r}, expected one of {', '.join(STOP_KINDS)}")


@dataclass(frozen=True)
class Problem:
    """One thing a check found wrong: a kind (e.g. ``value_differs``) and its facts."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cause:
    """Why a case did not pass: one of ``CAUSE_KINDS``, with its facts."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CAUSE_KINDS:
            raise ValueError(f"invalid cause {self.kind!r}, expected one of {', '.join(CAUSE_KINDS)}")


@dataclass(frozen=True)
class Note:
    """A remark about the whole submission (a skipped cell, a stop in top-level code, ...)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
