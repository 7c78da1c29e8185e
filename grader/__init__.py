"""Grade students' PyTorch notebooks against hidden reference solutions.

The public API is small and cheap to import (no torch in this process):

    from grader import grade_submission, GradeConfig
    report = grade_submission("submit.ipynb", GradeConfig())

Student code always runs in a separate worker process (see ``grader.execute.runner``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["GradeConfig", "Report", "CheckResult", "grade_submission", "check"]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from grader.config import GradeConfig
    from grader.pipeline import grade_submission
    from grader.local import check
    from grader.model.result import CheckResult, Report


def __getattr__(name: str) -> Any:
    # Lazy so that `python -m grader.execute.worker` and `grade --help` stay light.
    if name == "GradeConfig":
        from grader.config import GradeConfig
        return GradeConfig
    if name == "check":
        from grader.local import check
        return check
    if name == "grade_submission":
        from grader.pipeline import grade_submission
        return grade_submission
    if name in ("Report", "CheckResult"):
        from grader.model import result
        return getattr(result, name)
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
