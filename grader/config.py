"""One frozen configuration for a grading run; the CLI builds it, the library reads it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from grader.execute.sandbox import Limits


def default_root(near: Path | None = None) -> Path:
    """The course folder holding ``assignments/`` (and, for instructors, ``reference/``).

    ``$GRADER_ROOT`` if set; else the nearest folder above ``near`` (a submission) that
    has ``assignments/`` (so a student bundle finds its own fixtures); else the checkout
    this package lives in (a development or editable install); else the current directory.
    """
    env = os.environ.get("GRADER_ROOT")
    if env:
        return Path(env).resolve()
    if near is not None:
        for folder in Path(near).resolve().parents:
            if (folder / "assignments").is_dir():
                return folder
    here = Path(__file__).resolve().parent.parent
    if (here / "assignments").is_dir():
        return here
    return Path.cwd()


def default_cache_dir() -> Path:
    """Where reference outputs are cached: ``$GRADER_CACHE``, else the XDG cache folder."""
    env = os.environ.get("GRADER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grader"


@dataclass(frozen=True)
class GradeConfig:
    """Options of one grading run.

    ``assignment``: force the assignment instead of reading the notebook metadata or
    inferring it from the classes defined. ``timeout``: wall-clock seconds allowed for
    all of a submission's code; ``case_timeout``: for its top-level code or any one case.
    ``use_cache``: reuse the reference's cached outputs. ``sandbox``: 'auto' (bubblewrap
    when it works here, else a plain subprocess), 'bwrap' or 'none'; None reads
    ``$GRADER_SANDBOX``. ``limits``: the worker's resource limits.
    """

    assignment: str | None = None
    #: the course folder; None finds it from the submission's location (see ``default_root``)
    root: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    timeout: float = 120.0
    case_timeout: float = 30.0
    use_cache: bool = True
    sandbox: str | None = None
    limits: Limits = field(default_factory=Limits)

    def course_root(self, submission: Path | None = None) -> Path:
        """The course folder for grading ``submission``."""
        return self.root if self.root is not None else default_root(submission)
