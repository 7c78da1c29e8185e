"""The process exit codes of ``grade`` (DESIGN.md §1), chosen in one place."""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What the ``grade`` process reports to its caller."""

    #: Every check passed.
    OK = 0
    #: Some check failed, or the submission could not be graded (a report was still written).
    CHECKS_FAILED = 1
    #: Bad arguments, a missing file, an unknown or ambiguous assignment.
    USAGE_ERROR = 2
    #: A bug or broken installation of the grader itself; never a student's zero.
    INTERNAL_ERROR = 3
    #: Stopped by Ctrl-C (``grade batch``: what was graded is saved, and the same command resumes).
    INTERRUPTED = 130
