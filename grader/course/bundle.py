"""One assignment's course, copied whole into a folder: what another machine needs to grade it.

    FOLDER/course/assignments/NAME/   the assignment's folder (cases, known mistakes, checks)
    FOLDER/course/reference/FILE      its reference solution
    FOLDER/cache/...                  the reference's outputs and the mistake variants, from our cache

The outputs are computed here first when missing, so the other machine never recomputes them
(unless its torch differs: the fingerprint covers it). The copy must reproduce the original's
fingerprint, or nothing is written: a Gradescope autograder (``grader.authoring.package``) and
a Dask worker (``grader.batch.cluster``) grade from exactly this.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from grader.config import GradeConfig
from grader.course.reference_outputs import cache_folder, expected_outputs, fingerprint, variant_outputs, variants_folder
from grader.errors import InternalError, UsageError
from grader.spec.case_file import load_assignment
from grader.spec.cases import Assignment
from grader.spec.mistakes import load_mistakes

#: The two folders of a bundle, under the folder it is written to.
COURSE, CACHE = "course", "cache"


@dataclass(frozen=True)
class Bundle:
    """Where a written bundle's course and cache are: the ``GradeConfig.root`` and ``cache_dir`` to grade with."""

    root: Path
    cache_dir: Path


def write_bundle(assignment: Assignment, folder: Path, config: GradeConfig) -> Bundle:
    """Copy ``assignment``'s course and its cached outputs into ``folder`` (an empty or new one)."""
    if not assignment.trusted or assignment.released or not assignment.reference.is_file():
        raise UsageError(f"{assignment.name} needs the course's own folder with its reference "
                         f"({assignment.reference} not found): run it in the course, or pass --root")
    course = folder / COURSE
    shutil.copytree(assignment.folder, course / "assignments" / assignment.name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (course / "reference").mkdir()
    shutil.copy2(assignment.reference, course / "reference" / assignment.reference.name)
    reference = expected_outputs(assignment, config)
    variants = bool(load_mistakes(assignment.folder))
    if variants:
        variant_outputs(assignment, reference, config)
    ours = cache_folder(assignment, config)
    theirs = folder / CACHE / ours.relative_to(config.cache_dir)
    theirs.mkdir(parents=True)
    for name in ("expected.safetensors", "records.json"):
        shutil.copy2(ours / name, theirs / name)
    if variants:
        shutil.copytree(variants_folder(assignment, config), theirs / variants_folder(assignment, config).name)
    bundled = load_assignment(course / "assignments" / assignment.name, course, trusted=True)
    if fingerprint(bundled) != fingerprint(assignment):
        raise InternalError(f"the bundled course of {assignment.name} does not reproduce its reference's fingerprint")
    return Bundle(course, folder / CACHE)
