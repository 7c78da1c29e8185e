"""Every error the grader raises, under one base class.

Each error carries the message a person reads: what went wrong, where, and what to try.
``UsageError`` maps to exit code 2, ``InternalError`` (and anything unexpected) to 3.
"""
from __future__ import annotations


class GraderError(Exception):
    """Base class of the grader's own errors."""

    def __reduce__(self):  # survive pickling with their message, like nbclient's errors
        return (type(self), self.args)


class UsageError(GraderError):
    """The command was asked for something it cannot do (bad path, unknown assignment, ...)."""


class CaseFileError(UsageError):
    """An assignment's ``cases.toml`` is malformed; the message names the file, case and key."""

    def __init__(self, path: str, where: str, problem: str):
        super().__init__(path, where, problem)
        self.path, self.where, self.problem = path, where, problem

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.problem}"


class InternalError(GraderError):
    """The grader itself failed (a bug, a worker that broke protocol or could not start).

    A reference or a case that fails is the course's mistake, a ``CaseFileError``, never this.
    """


class SubmissionUnreadable(GraderError):
    """The submission file exists but cannot be read as a notebook or Python source.

    Not a usage error: the student still gets a report with score 0 and this message.
    """
