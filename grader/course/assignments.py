"""Finding assignments in a course folder and inferring which one a submission is."""
from __future__ import annotations

from pathlib import Path

from grader.course.resolve import Course
from grader.errors import UsageError
from grader.spec.case_file import load_assignment
from grader.spec.cases import Assignment


def assignment_names(root: Path) -> list[str]:
    """Names of the assignments under ``root/assignments`` (folders with a cases.toml)."""
    base = root / "assignments"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "cases.toml").is_file())


def get_assignment(course: Course, name: str) -> Assignment:
    """Load one assignment by name; an unknown name is a usage error listing the known ones."""
    names = assignment_names(course.root)
    if name not in names:
        known = ", ".join(names) or "none"
        raise UsageError(f"unknown assignment {name!r} in the course {course.describe()}; known assignments: {known}")
    return load_assignment(course.root / "assignments" / name, course.root, course.trusted)


def infer_assignment(course: Course, class_names: set[str]) -> Assignment:
    """The one assignment whose graded classes the submission defines.

    Picks the assignment with the most graded classes present; none or a tie is a
    usage error that tells the user to pass ``--assignment``.
    """
    assignments = [get_assignment(course, n) for n in assignment_names(course.root)]
    scored = sorted(((len(set(a.classes) & class_names), a.name, a) for a in assignments), reverse=True)
    known = ", ".join(a.name for a in assignments)
    if not scored or scored[0][0] == 0:
        raise UsageError(
            "cannot tell which assignment this is: it defines none of the graded classes "
            f"({'; '.join(f'{a.name}: ' + ', '.join(a.classes) for a in assignments)}); "
            f"pass --assignment NAME ({known})"
        )
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        raise UsageError(f"ambiguous submission: it matches both {scored[0][1]} and {scored[1][1]}; "
                         "pass --assignment NAME")
    return scored[0][2]
