"""Which course folder grading uses, and whether it is trusted.

The course (``assignments/`` with the case files, ``reference/`` with the solutions) is
looked for in this order, the first that exists wins:

1. ``--root DIR`` (``GradeConfig.root``)
2. ``$GRADER_ROOT``
3. the course around the current directory: the current directory or the nearest folder
   above it that holds ``assignments/``
4. the grader's own checkout (a development or editable install)

``$GRADER_ROOT`` comes before the current folder on purpose: an instructor who runs ``grade``
from inside a student's unpacked folder must not be handed a course the student wrote. When
the current folder is inside a different course than the one chosen, ``Course.passed_over``
says so, and every command prints it.

Each of these is **trusted**: its instructor checks (``checks.py``) are imported and its
reference runs (in the sandbox, like any code). Only when none exists is a released bundle
beside the submission used (the nearest folder above the submission holding
``assignments/``): that is a student's local check, it is **not trusted**, nothing in it is
imported or run outside the sandbox, only its public fixtures are read, and the report
says so. A folder beside the submission is never the course while a trusted one exists,
so a student who uploads a (forged) bundle with their work changes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grader.errors import UsageError

#: Where a course was found, in the order they are tried, in words.
_WORDS = {"option": "--root", "env": "$GRADER_ROOT", "cwd": "the current folder", "checkout": "the grader's checkout",
          "submission": "beside the submission (not trusted)"}


@dataclass(frozen=True)
class Course:
    """A course folder and how it was found."""

    root: Path
    source: str
    #: a course around the current folder that was not used (``$GRADER_ROOT`` or ``--root`` won)
    passed_over: Path | None = None

    @property
    def trusted(self) -> bool:
        """False only for a bundle found beside the submission (a student's local check)."""
        return self.source != "submission"

    def describe(self) -> str:
        """'/path/to/course (from $GRADER_ROOT)', and the course around the current folder not used."""
        text = f"{self.root} (from {_WORDS[self.source]})"
        if self.passed_over is not None:
            text += (f"; the current folder is inside another course, {self.passed_over}, which was not used "
                     "(pass --root to choose it)")
        return text


def resolve_course(explicit: Path | None = None, submission: Path | None = None) -> Course:
    """The course for grading ``submission`` (see the module docstring for the order)."""
    around = _course_above(Path.cwd())
    if explicit is not None:
        return _chosen(Path(explicit).resolve(), "option", around)
    env = os.environ.get("GRADER_ROOT")
    if env:
        return _chosen(Path(env).resolve(), "env", around)
    if around is not None:
        return Course(around, "cwd")
    checkout = grader_checkout()
    if checkout is not None:
        return Course(checkout, "checkout")
    if submission is not None:
        beside = _course_above(Path(submission).absolute().parent.resolve())  # never through a link's target
        if beside is not None:
            return Course(beside, "submission")
    raise UsageError("no course found: pass --root DIR (the folder holding assignments/ and reference/), "
                     "set $GRADER_ROOT, or run from inside the course folder")


def _chosen(root: Path, source: str, around: Path | None) -> Course:
    passed_over = around if source == "env" and around is not None and around != root else None
    return Course(root, source, passed_over)


def grader_checkout() -> Path | None:
    """The checkout this package runs from, when it holds a course (a development or editable install)."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "assignments").is_dir() else None


def _course_above(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (candidate / "assignments").is_dir():
            return candidate
    return None
